"""split_dataset / train_test_split: disjoint by normalized question, sized, deterministic."""
import pytest

from mathlm.data import generate_dataset, normalize_question, split_dataset, train_test_split


@pytest.fixture(scope="module")
def records():
    recs = generate_dataset(n_per_domain=40, seed=1, verify=False)
    # twins that differ only in case and punctuation must stay together
    twins = [dict(r, id=r["id"] + "-twin", question=r["question"].upper().replace("?", " ?!")) for r in recs[:30]]
    return recs + twins


def _questions(part):
    return {normalize_question(r["question"]) for r in part}


def test_parts_are_disjoint_and_cover_everything(records):
    sizes = {"labelled": 0.1, "answer_only_pool": 0.7, "val": 0.1, "test": 0.1}
    parts = split_dataset(records, sizes, seed=0)
    names = list(parts)
    assert names == list(sizes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not _questions(parts[a]) & _questions(parts[b]), (a, b)
    assert sorted(r["id"] for p in parts.values() for r in p) == sorted(r["id"] for r in records)
    n = len(records)
    for name, frac in sizes.items():
        # a group of identical questions is never cut, so a part may be off by a group (2 here)
        assert abs(len(parts[name]) - frac * n) <= 2, (name, len(parts[name]), frac * n)


def test_deterministic_by_seed(records):
    sizes = {"train": 0.8, "test": 0.2}
    a, b, c = (split_dataset(records, sizes, seed=s) for s in (3, 3, 4))
    assert [r["id"] for r in a["test"]] == [r["id"] for r in b["test"]]
    assert [r["id"] for r in a["test"]] != [r["id"] for r in c["test"]]


def test_counts_leave_the_rest_out(records):
    parts = split_dataset(records, {"labelled": 25, "pool": 200}, seed=0)
    assert 25 <= len(parts["labelled"]) <= 26 and 200 <= len(parts["pool"]) <= 201
    assert not _questions(parts["labelled"]) & _questions(parts["pool"])


def test_stratified_split_keeps_every_domain_in_every_part(records):
    parts = split_dataset(records, {"a": 0.5, "b": 0.25, "c": 0.25}, seed=0, stratify="domain")
    domains = {r["domain"] for r in records}
    for name, part in parts.items():
        assert {r["domain"] for r in part} == domains, name
    assert not _questions(parts["a"]) & _questions(parts["b"])
    assert not _questions(parts["b"]) & _questions(parts["c"])
    assert sum(map(len, parts.values())) == len(records)


def test_train_test_split(records):
    train, test = train_test_split(records, test_fraction=0.25, seed=2)
    assert not _questions(train) & _questions(test)
    assert len(train) + len(test) == len(records)
    assert abs(len(test) - 0.25 * len(records)) <= 2


def test_bad_sizes_are_named(records):
    with pytest.raises(ValueError, match=r"fractions \{'a': 0.5, 'b': 0.4\} must be >= 0 and sum to 1 \(they sum to 0.9\)"):
        split_dataset(records, {"a": 0.5, "b": 0.4})
    with pytest.raises(ValueError, match=r"counts \{'a': 10000\} must be >= 0 and sum to at most the \d+ records"):
        split_dataset(records, {"a": 10000})
    with pytest.raises(ValueError, match=r"test_fraction \(1.0\) must be in \(0, 1\)"):
        train_test_split(records, test_fraction=1.0)
