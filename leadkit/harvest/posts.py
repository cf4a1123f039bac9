"""Dataset items of the posts actor -> `Post`, profile URL normalisation, merge and dedupe.

The actor (`harvestapi~linkedin-profile-posts`) pushes one item per post::

    {"type": "post", "id": "73...", "linkedinUrl": "https://www.linkedin.com/posts/...",
     "content": "...", "author": {"publicIdentifier", "name", "linkedinUrl", "info", "avatar": {...}},
     "postedAt": {"timestamp": 1747419119821, "date": "2025-05-16T18:11:59.821Z", "postedAgoText": "..."},
     "postImages": [{"url": ...}], "repost": {...}?, "repostedBy": {...}?,
     "engagement": {"likes", "comments", "shares", "reactions": [{"type", "count"}]},
     "query": {"targetUrl": <the profile URL it was asked for>}}

Older builds used flat `authorLinkedinUrl`/`authorPublicIdentifier` fields; both shapes are read.
A post is filed under the profile it was harvested *for* (the query's target, else the reposter, else
the author), because that is the lead it belongs to; `Post.author_url` holds that profile URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from leadkit.linkedin_urls import is_valid_profile_url, normalize_profile_url, post_key
from leadkit.models import Post

__all__ = [
    "group_by_profile",
    "is_valid_profile_url",
    "item_to_post",
    "merge_posts",
    "normalize_profile_url",
    "post_key",
]

_NON_POST_TYPES = {"reaction", "comment", "profile", "company"}


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        digits = value.replace(",", "").strip()
        try:
            return int(float(digits))
        except ValueError:
            return 0
    return 0


def _posted_at(item: dict[str, Any]) -> str | None:
    posted = item.get("postedAt")
    if isinstance(posted, dict):
        if isinstance(posted.get("date"), str) and posted["date"]:
            return str(posted["date"])
        stamp = posted.get("timestamp")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            seconds = stamp / 1000 if stamp > 10**11 else stamp
            return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
        return None
    if isinstance(posted, str) and posted:
        return posted
    return None


def _image_url(item: dict[str, Any]) -> str | None:
    images = item.get("postImages")
    for source in (images if isinstance(images, list) else []) + [item.get("postImage")]:
        if isinstance(source, str) and source:
            return source
        if isinstance(source, dict) and isinstance(source.get("url"), str):
            return str(source["url"])
    return None


def _profile_url_of(person: Any) -> str | None:
    if not isinstance(person, dict):
        return None
    url = person.get("linkedinUrl") or person.get("url")
    if isinstance(url, str) and url:
        return url
    handle = person.get("publicIdentifier")
    if isinstance(handle, str) and handle:
        return f"https://www.linkedin.com/in/{handle}"
    return None


def source_profile_url(item: dict[str, Any]) -> str | None:
    """The profile an item was harvested for: the query target, else the reposter, else the author."""
    query = item.get("query")
    if isinstance(query, dict):
        for key in ("targetUrl", "profileUrl", "url"):
            value = query.get(key)
            if isinstance(value, str) and value:
                return value
        handle = query.get("profilePublicIdentifier") or query.get("profile")
        if isinstance(handle, str) and handle:
            return handle if "linkedin.com" in handle else f"https://www.linkedin.com/in/{handle}"
    for candidate in (item.get("repostedBy"), item.get("author")):
        url = _profile_url_of(candidate)
        if url:
            return url
    flat = item.get("authorLinkedinUrl") or item.get("authorProfileUrl")
    if isinstance(flat, str) and flat:
        return flat
    handle = item.get("authorPublicIdentifier")
    if isinstance(handle, str) and handle:
        return f"https://www.linkedin.com/in/{handle}"
    return None


def item_to_post(item: dict[str, Any]) -> Post | None:
    """The post an item describes, or None when it is not a post (a reaction, a comment, an item
    without a post URL or without a profile to file it under)."""
    if not isinstance(item, dict):
        return None
    if str(item.get("type") or "post").lower() in _NON_POST_TYPES:
        return None
    social: dict[str, Any] = item["socialContent"] if isinstance(item.get("socialContent"), dict) else {}
    post_url = item.get("linkedinUrl") or item.get("postUrl") or item.get("url") or social.get("shareUrl")
    profile = source_profile_url(item)
    if not isinstance(post_url, str) or not post_url or not profile:
        return None
    repost: dict[str, Any] | None = item["repost"] if isinstance(item.get("repost"), dict) else None
    text = item.get("content") or item.get("text") or ""
    if not text and repost:
        text = repost.get("content") or ""
    engagement: dict[str, Any] = item["engagement"] if isinstance(item.get("engagement"), dict) else {}
    likes = engagement.get("likes")
    if likes is None and isinstance(engagement.get("reactions"), list):
        likes = sum(_as_int(r.get("count")) for r in engagement["reactions"] if isinstance(r, dict))
    return Post(
        post_url=post_url,
        author_url=profile,
        text=str(text),
        posted_at=_posted_at(item),
        likes=_as_int(likes),
        comments=_as_int(engagement.get("comments")),
        reposts=_as_int(engagement.get("shares")),
        is_repost=bool(repost or item.get("repostedBy") or item.get("isRepost") or item.get("repostId")),
        image_url=_image_url(item),
    )


def group_by_profile(items: Iterable[dict[str, Any]]) -> dict[str, list[Post]]:
    """Posts keyed by the normalised URL of the profile they were harvested for, deduped by post."""
    groups: dict[str, dict[str, Post]] = {}
    for item in items:
        post = item_to_post(item)
        if post is None:
            continue
        bucket = groups.setdefault(normalize_profile_url(post.author_url), {})
        bucket[post_key(post.post_url)] = post
    return {profile: list(posts.values()) for profile, posts in groups.items()}


def merge_posts(existing: list[dict[str, Any]], new: list[Post]) -> list[dict[str, Any]]:
    """A lead's stored posts with `new` merged in: one entry per post (a newer copy of a post already
    there replaces it in place, with its fresh engagement); entries without a URL are kept as they are."""
    merged: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for entry in existing:
        url = entry.get("postUrl") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url:
            merged.append(entry)
            continue
        key = post_key(url)
        if key in index:
            merged[index[key]] = entry
        else:
            index[key] = len(merged)
            merged.append(entry)
    for post in new:
        key = post_key(post.post_url)
        if key in index:
            merged[index[key]] = post.to_dict()
        else:
            index[key] = len(merged)
            merged.append(post.to_dict())
    return merged
