"""The persisted trainA/trainB split."""

import json

import pytest

from fastadl.data import DatasetError, load_split, make_split, save_split

IDS = [f"img_{i:03d}" for i in range(41)]


def test_halves_are_disjoint_cover_everything_and_balanced():
    split = make_split(IDS, seed=0)
    a, b = set(split["trainA"]), set(split["trainB"])
    assert not a & b and a | b == set(IDS)
    assert len(split["trainA"]) == 21 and len(split["trainB"]) == 20
    assert split["seed"] == 0


def test_deterministic_by_seed_and_independent_of_order():
    assert make_split(IDS, 7) == make_split(list(reversed(IDS)), 7)
    assert make_split(IDS, 7) != make_split(IDS, 8)


def test_too_few_or_duplicate_ids():
    with pytest.raises(DatasetError, match="at least 2"):
        make_split(["only"], 0)
    with pytest.raises(DatasetError, match="not unique"):
        make_split(["a", "a", "b"], 0)


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "split.json"
    split = make_split(IDS, 1)
    save_split(path, split)
    assert load_split(path, IDS) == split
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed away


def test_load_rejects_ids_the_dataset_no_longer_has(tmp_path):
    path = tmp_path / "split.json"
    save_split(path, make_split(IDS, 1))
    with pytest.raises(DatasetError, match=rf"(?s){path}.*2 id"):
        load_split(path, IDS[2:])


def test_load_warns_about_ids_in_neither_half(tmp_path):
    path = tmp_path / "split.json"
    save_split(path, make_split(IDS, 1))
    with pytest.warns(UserWarning, match="1 dataset item"):
        load_split(path, [*IDS, "new_image"])


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"trainA": ["a"]}), "string lists"),
        (json.dumps({"trainA": ["a", "b"], "trainB": ["b"]}), "both trainA and trainB"),
    ],
)
def test_load_rejects_malformed_files(tmp_path, content, match):
    path = tmp_path / "split.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=rf"(?s){path}.*{match}"):
        load_split(path, ["a", "b"])


def test_load_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read split file"):
        load_split(tmp_path / "split.json", IDS)
