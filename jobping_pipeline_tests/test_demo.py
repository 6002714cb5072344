"""Tests for the deterministic demo job generator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jobping_pipeline.demo import DemoJob, generate_jobs

N = 2000
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def jobs() -> list[DemoJob]:
    return list(generate_jobs(N, seed=7, now=NOW))


def _text_key(job: DemoJob) -> tuple[object, ...]:
    return (job.title, job.company, job.location, tuple(job.categories), job.description)


def test_count_is_exact(jobs: list[DemoJob]) -> None:
    assert len(jobs) == N
    assert all(isinstance(j, DemoJob) for j in jobs)
    assert len(list(generate_jobs(1))) == 1
    assert list(generate_jobs(0)) == []


def test_negative_count_raises() -> None:
    with pytest.raises(ValueError, match="count"):
        generate_jobs(-1)


def test_same_seed_is_deterministic() -> None:
    assert list(generate_jobs(300, seed=5, now=NOW)) == list(generate_jobs(300, seed=5, now=NOW))
    # The default reference date is fixed, so omitting `now` is reproducible too.
    assert list(generate_jobs(50, seed=5)) == list(generate_jobs(50, seed=5))


def test_different_seeds_differ() -> None:
    a = [_text_key(j) for j in generate_jobs(100, seed=1, now=NOW)]
    b = [_text_key(j) for j in generate_jobs(100, seed=2, now=NOW)]
    assert a != b
    assert len(set(a) & set(b)) < 5


def test_default_now_is_2026_11_01() -> None:
    for job in generate_jobs(200, seed=3):
        assert NOW - timedelta(days=181) <= job.created_at <= NOW


def test_required_fields_are_populated(jobs: list[DemoJob]) -> None:
    for job in jobs:
        assert job.title.strip() and job.company.strip() and job.location.strip()
        assert 1 <= len(job.categories) <= 3
        assert len(set(job.categories)) == len(job.categories)
        assert all(c.strip() for c in job.categories)


def test_description_word_counts(jobs: list[DemoJob]) -> None:
    counts = [len(j.description.split()) for j in jobs if j.description]
    assert len(counts) > 0.9 * N
    assert min(counts) >= 50
    assert max(counts) <= 600
    # Spread across the range, not clustered at one length.
    assert sum(c < 150 for c in counts) > 0.08 * len(counts)
    assert sum(c > 450 for c in counts) > 0.15 * len(counts)


def test_description_mentions_posting(jobs: list[DemoJob]) -> None:
    for job in jobs:
        if job.description:
            assert job.company in job.description
            assert job.title in job.description
            if job.location != "Remote (EU)":
                assert job.location.split(",")[0] in job.description


def test_descriptions_have_bullets(jobs: list[DemoJob]) -> None:
    long_texts = [j.description for j in jobs if j.description and len(j.description.split()) > 200]
    assert long_texts
    assert all("\n- " in d for d in long_texts)


def test_empty_and_none_descriptions(jobs: list[DemoJob]) -> None:
    empty = sum(j.description == "" for j in jobs)
    missing = sum(j.description is None for j in jobs)
    # Expected about 1% each (20 of 2000).
    assert 5 <= empty <= 50
    assert 5 <= missing <= 50


def test_exact_duplicates_of_earlier_jobs(jobs: list[DemoJob]) -> None:
    seen: set[tuple[object, ...]] = set()
    duplicates = 0
    for job in jobs:
        key = _text_key(job)
        if key in seen:
            duplicates += 1
        seen.add(key)
    # Expected about 1% (20 of 2000).
    assert 5 <= duplicates <= 50


def test_duplicates_do_not_share_mutable_state(jobs: list[DemoJob]) -> None:
    by_key: dict[tuple[object, ...], DemoJob] = {}
    for job in jobs:
        key = _text_key(job)
        if key in by_key:
            assert job.categories is not by_key[key].categories
        by_key[key] = job


def test_variety(jobs: list[DemoJob]) -> None:
    assert len({j.title for j in jobs}) > 500
    assert len({j.company for j in jobs}) > 1500
    assert len({j.location for j in jobs}) >= 40
    assert len({c for j in jobs for c in j.categories}) >= 12
    assert any(j.location == "Remote (EU)" for j in jobs)
    assert all(j.location == "Remote (EU)" or ", " in j.location for j in jobs)


def test_is_active_ratio(jobs: list[DemoJob]) -> None:
    ratio = sum(j.is_active for j in jobs) / N
    assert 0.85 <= ratio <= 0.95


def test_created_at_is_utc_and_in_range(jobs: list[DemoJob]) -> None:
    earliest = NOW - timedelta(days=180)
    for job in jobs:
        assert job.created_at.tzinfo is not None
        assert job.created_at.utcoffset() == timedelta(0)
        assert earliest <= job.created_at <= NOW
    spread = max(j.created_at for j in jobs) - min(j.created_at for j in jobs)
    assert spread > timedelta(days=150)


def test_created_at_follows_custom_now() -> None:
    now = datetime(2025, 3, 15, 12, tzinfo=timezone.utc)
    for job in generate_jobs(100, seed=1, now=now):
        assert now - timedelta(days=180) <= job.created_at <= now
