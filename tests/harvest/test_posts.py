"""Mapping dataset items to posts, URL normalisation, grouping and merge, on realistic items."""

from __future__ import annotations

from typing import Any

import pytest

from leadkit.errors import DataError
from leadkit.harvest.posts import (
    group_by_profile,
    is_valid_profile_url,
    item_to_post,
    merge_posts,
    normalize_profile_url,
    post_key,
)
from leadkit.models import Post
from leadkit_sandbox.apify import posts_for_profile


def item(**over: Any) -> dict[str, Any]:
    """An item shaped like harvestapi~linkedin-profile-posts output."""
    base: dict[str, Any] = {
        "type": "post",
        "id": "7329207003942125568",
        "linkedinUrl": "https://www.linkedin.com/posts/jane-doe_pipeline-activity-7329207003942125568-AbCd",
        "content": "What we learned rebuilding our pipeline",
        "author": {
            "publicIdentifier": "jane-doe",
            "name": "Jane Doe",
            "linkedinUrl": "https://www.linkedin.com/in/jane-doe?miniProfileUrn=urn%3Ali%3Afsd_profile%3AACoA",
            "info": "VP Sales at Globex",
        },
        "postedAt": {"timestamp": 1747419119821, "date": "2025-05-16T18:11:59.821Z", "postedAgoText": "6 days ago"},
        "postImages": [{"url": "https://media.licdn.com/img1.jpg", "width": 800, "height": 600}],
        "engagement": {"likes": 120, "comments": 14, "shares": 3, "reactions": [{"type": "LIKE", "count": 120}]},
        "query": {"targetUrl": "https://www.linkedin.com/in/jane-doe/"},
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    "url",
    [
        "https://www.linkedin.com/in/Jane-Doe/",
        "http://linkedin.com/in/jane-doe",
        "linkedin.com/in/jane-doe?trk=public_profile",
        "www.linkedin.com/in/jane-doe/recent-activity/all/",
        "https://uk.linkedin.com/in/jane-doe#about",
        "https://www.linkedin.com/in/jane-doe/recent-activity/shares",
        " https://www.linkedin.com/in/jane-doe ",
    ],
)
def test_profile_url_variants_normalise_alike(url: str) -> None:
    assert normalize_profile_url(url) == "linkedin.com/in/jane-doe"


def test_normalise_rejects_empty_and_validity() -> None:
    with pytest.raises(DataError, match="empty"):
        normalize_profile_url("  ")
    assert is_valid_profile_url("https://www.linkedin.com/in/jane-doe/")
    assert is_valid_profile_url("https://www.linkedin.com/company/globex")
    assert not is_valid_profile_url("https://example.com/in/jane")
    assert not is_valid_profile_url("https://www.linkedin.com/feed/")
    assert not is_valid_profile_url("")
    assert not is_valid_profile_url(None)


def test_item_to_post_full_item() -> None:
    post = item_to_post(item())
    assert post == Post(
        post_url="https://www.linkedin.com/posts/jane-doe_pipeline-activity-7329207003942125568-AbCd",
        author_url="https://www.linkedin.com/in/jane-doe/",
        text="What we learned rebuilding our pipeline",
        posted_at="2025-05-16T18:11:59.821Z",
        likes=120,
        comments=14,
        reposts=3,
        is_repost=False,
        image_url="https://media.licdn.com/img1.jpg",
    )


def test_item_with_missing_fields() -> None:
    sparse = {
        "linkedinUrl": "https://www.linkedin.com/feed/update/urn:li:activity:7300000000000000001/",
        "author": {"publicIdentifier": "sam-lee"},
        "postedAt": {"timestamp": 1747419119821},
        "engagement": None,
    }
    post = item_to_post(sparse)
    assert post is not None
    assert post.author_url == "https://www.linkedin.com/in/sam-lee"
    assert post.text == "" and post.likes == 0 and post.comments == 0 and post.image_url is None
    assert post.posted_at == "2025-05-16T18:11:59.821000Z"


def test_items_that_are_not_posts() -> None:
    assert item_to_post(item(type="reaction")) is None
    assert item_to_post(item(type="comment")) is None
    assert item_to_post({"content": "no url", "author": {"publicIdentifier": "x"}}) is None
    no_profile = item(query=None, author=None)
    assert item_to_post(no_profile) is None
    assert item_to_post("not a dict") is None  # type: ignore[arg-type]


def test_repost_is_filed_under_the_reposter_and_labelled() -> None:
    repost = item(
        content="",
        query=None,
        repostedBy={"publicIdentifier": "jane-doe", "linkedinUrl": "https://www.linkedin.com/in/jane-doe"},
        author={"name": "Initech", "linkedinUrl": "https://www.linkedin.com/company/initech/posts"},
        repost={"id": "1", "content": "Our report is out", "author": {"name": "Initech"}},
        engagement={"reactions": [{"type": "LIKE", "count": "1,200"}, {"type": "PRAISE", "count": 5}]},
    )
    post = item_to_post(repost)
    assert post is not None
    assert post.is_repost and post.text == "Our report is out"
    assert normalize_profile_url(post.author_url) == "linkedin.com/in/jane-doe"
    assert post.likes == 1205


def test_legacy_flat_item() -> None:
    legacy = {
        "id": "7319399301971943425",
        "content": "Inspired by resilience",
        "authorPublicIdentifier": "bill-g",
        "authorLinkedinUrl": "https://www.linkedin.com/in/bill-g?miniProfileUrn=urn",
        "socialContent": {
            "shareUrl": "https://www.linkedin.com/posts/bill-g_x-activity-7319399301971943425-6S3H?utm=1"
        },
        "repostId": "7314358712113025024",
        "engagement": {"likes": 1563, "comments": 400, "shares": 81},
    }
    post = item_to_post(legacy)
    assert post is not None and post.is_repost and post.reposts == 81
    assert normalize_profile_url(post.author_url) == "linkedin.com/in/bill-g"


def test_group_by_profile_dedupes_and_uses_url_variants() -> None:
    items = [
        item(),
        item(linkedinUrl="https://www.linkedin.com/feed/update/urn:li:activity:7329207003942125568/"),  # same post
        item(
            id="7329207003942125569",
            linkedinUrl="https://www.linkedin.com/posts/jane-doe_hiring-activity-7329207003942125569-Zz",
            query={"targetUrl": "linkedin.com/in/JANE-DOE/recent-activity/all/"},
        ),
        item(type="reaction"),
        item(
            linkedinUrl="https://www.linkedin.com/posts/sam_x-activity-7000000000000000001-aa",
            query={"targetUrl": "https://www.linkedin.com/in/sam"},
        ),
    ]
    groups = group_by_profile(items)
    assert set(groups) == {"linkedin.com/in/jane-doe", "linkedin.com/in/sam"}
    assert len(groups["linkedin.com/in/jane-doe"]) == 2
    assert len(groups["linkedin.com/in/sam"]) == 1


def test_post_key_matches_activity_urls() -> None:
    a = "https://www.linkedin.com/posts/jane_x-activity-7329207003942125568-AbCd?utm_source=share"
    b = "https://linkedin.com/feed/update/urn:li:activity:7329207003942125568/"
    assert post_key(a) == post_key(b) == "activity:7329207003942125568"
    assert post_key("https://www.linkedin.com/pulse/some-article/?x=1") == "linkedin.com/pulse/some-article"


def test_merge_posts_dedupes_by_post_url_and_keeps_the_rest() -> None:
    old_same = {"postUrl": "https://linkedin.com/feed/update/urn:li:activity:7329207003942125568/", "likes": 1}
    old_other = {"postUrl": "https://www.linkedin.com/posts/jane_y-activity-7111111111111111111-x", "likes": 9}
    malformed = {"text": "a post stored without a URL"}
    fresh = item_to_post(item())
    assert fresh is not None
    merged = merge_posts([old_same, old_other, dict(old_other), malformed], [fresh, fresh])
    assert len(merged) == 3
    assert merged[0]["likes"] == 120 and merged[0]["postUrl"] == fresh.post_url  # refreshed in place
    assert merged[1] == old_other
    assert merged[2] == malformed
    assert merge_posts([], []) == []


def test_sandbox_items_map_cleanly() -> None:
    """The sandbox's actor output goes through the same mapping with nothing lost."""
    urls = [f"https://www.linkedin.com/in/lead-{i}/" for i in range(40)]
    items = [it for url in urls for it in posts_for_profile(url)]
    groups = group_by_profile(items)
    empty = [u for u in urls if not posts_for_profile(u)]
    assert 4 <= len(empty) <= 18, "about one profile in four has no posts"
    assert len(groups) == len(urls) - len(empty)
    assert sum(len(v) for v in groups.values()) == len(items)
    assert any(p.is_repost for posts in groups.values() for p in posts)
    ids = [p["id"] for p in posts_for_profile("https://linkedin.com/in/lead-3")]
    assert ids == [p["id"] for p in posts_for_profile("https://www.linkedin.com/in/Lead-3/")], "deterministic"
    assert posts_for_profile("https://example.com/x") == []
