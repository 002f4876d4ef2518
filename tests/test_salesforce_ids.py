from sf_sync.salesforce_ids import checksum, is_valid_18, make_id, to_18


def test_checksum_of_the_reference_sample() -> None:
    assert to_18("0015f00002JUXA8") == "0015f00002JUXA8AAP"
    assert checksum("0055f000005mc66") == "AAA"


def test_made_ids_are_valid_and_distinct() -> None:
    ids = {make_id("001", n) for n in range(2000)}
    assert len(ids) == 2000 and all(is_valid_18(i) and i.startswith("001") for i in ids)


def test_a_changed_case_breaks_the_checksum() -> None:
    assert not is_valid_18("0015F00002JUXA8AAP")


def test_normalise_restores_case_and_refuses_malformed_ids() -> None:
    from sf_sync.salesforce_ids import make_id, normalise

    rid = make_id("001", 123456, pod="7Dv")
    assert normalise(rid) == rid
    assert normalise(rid[:15]) == rid  # 15 characters gain their checksum
    assert normalise(rid.lower()) == rid  # the suffix tells the case back
    assert normalise(rid.upper()) == rid
    assert normalise("001") is None
    assert normalise(rid[:17] + "!") is None
