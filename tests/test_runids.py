from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from leadkit.errors import DataError, InvalidClientId, InvalidRunId
from leadkit.runids import CLIENT_ID_PATTERN, RunId, validate_client_id

# --- accepted forms -------------------------------------------------------------------------------------------


def test_canonical_base() -> None:
    run = RunId.parse("250925-201845")
    assert run.base == "250925-201845"
    assert run.client_id is None
    assert run.started_at == datetime(2025, 9, 25, 20, 18, 45, tzinfo=UTC)
    assert str(run) == "250925-201845"
    assert not run.is_legacy


@pytest.mark.parametrize(
    ("text", "client"),
    [
        ("250925-201845-Acme-Co", "Acme-Co"),
        ("250925-201845-Globex", "Globex"),
        ("251007-070457-Guy-Wilson", "Guy-Wilson"),
        ("250925-201845-Initech_Ltd.v2", "Initech_Ltd.v2"),
        ("250925-201845-a-b-c-d", "a-b-c-d"),
        ("250925-201845-Acme-Co-Acme", "Acme-Co-Acme"),
        ("250925-201845-v1.0", "v1.0"),
    ],
)
def test_client_run_id_keeps_every_hyphen_of_the_client(text: str, client: str) -> None:
    run = RunId.parse(text)
    assert run.base == text[:13]
    assert run.client_id == client
    assert str(run) == text


def test_surrounding_whitespace_is_ignored() -> None:
    assert RunId.parse("  250925-201845-Acme-Co\n") == RunId("250925-201845", "Acme-Co")


def test_trailing_dot_zero_is_legacy_noise_after_a_base() -> None:
    run = RunId.parse("250925-201845.0")
    assert run == RunId("250925-201845")
    assert str(run) == "250925-201845"


def test_trailing_dot_zero_after_a_client_belongs_to_the_client() -> None:
    assert RunId.parse("250925-201845-Acme.0").client_id == "Acme.0"


@pytest.mark.parametrize(
    ("text", "base"),
    [
        ("job_post_scoring_stream1_20250929094802", "250929-094802"),
        ("job_post_harvesting_stream2_20251006225513", "251006-225513"),
        ("job_lead_scoring_stream10_20240229235959", "240229-235959"),
        ("job_post_scoring_stream1_20250929094802.0", "250929-094802"),
    ],
)
def test_job_form_becomes_its_base(text: str, base: str) -> None:
    run = RunId.parse(text)
    assert run.base == base
    assert run.client_id is None
    assert str(run) == base
    assert run.started_at is not None
    assert run.started_at.strftime("%y%m%d-%H%M%S") == base


@pytest.mark.parametrize(
    ("text", "client"),
    [
        ("SR-250923-001", None),
        ("SR-250924-001-T1899", None),
        ("SR-250924-001-S1", None),
        ("SR-250924-001-T1899-S1", None),
        ("SR-250924-002-T1899-S12.0", None),
        ("SR-250923-001-CGuy-Wilson", "Guy-Wilson"),
        ("SR-250923-001-S1-CGuy-Wilson", "Guy-Wilson"),
        ("SR-250923-001-T0042-CAcme-Co", "Acme-Co"),
        ("SR-250923-001-T0042-S2-CAcme-Co", "Acme-Co"),
        ("SR-250923-001-CCatalyst", "Catalyst"),
    ],
)
def test_legacy_sr_forms(text: str, client: str | None) -> None:
    run = RunId.parse(text)
    assert run.base == text[:13]
    assert run.client_id == client
    assert run.started_at is None
    assert run.is_legacy
    assert str(run) == (run.base if client is None else f"{run.base}-C{client}")
    assert RunId.parse(str(run)) == run


# --- rejected forms -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "251332-250000",  # month 13, hour 25
        "250230-101010",  # 30 February
        "250229-101010",  # 2025 is not a leap year
        "250925-240000",  # 24:00:00
        "250925-206000",  # minute 60
        "250925-201860",  # second 60
        "250925-201861",  # second 61 (a leap second in strptime's eyes)
        "250900-201845",  # day 0
    ],
)
def test_impossible_dates_and_times_are_rejected(text: str) -> None:
    with pytest.raises(InvalidRunId, match="not a real date and time"):
        RunId.parse(text)
    with pytest.raises(InvalidRunId):
        RunId.parse(f"{text}-Acme-Co")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("250925-201845-", "client part after the base is empty"),
        ("250925-201845-../x", "not a valid client ID"),
        ("250925-201845-Acme/Co", "not a valid client ID"),
        ("250925-201845-Acme\\Co", "not a valid client ID"),
        ("250925-201845-.hidden", "not a valid client ID"),
        ("250925-201845--Acme", "not a valid client ID"),
        ("250925-201845-Acme Co", "not a valid client ID"),
        ("250925-201845-Acme\nCo", "not a valid client ID"),
        ("250925-201845-" + "a" * 65, "not a valid client ID"),
        ("250925-201845-Acme-Co-Acme-Co", "doubled"),
        ("251007-070457-Guy-Wilson-Guy-Wilson", "doubled"),
        ("250925-201845-X-X", "doubled"),
        ("250925-201845-batch-all-clients", "batch-all-clients"),
        ("250925-201845-batch-all-clients-Acme-Co", "batch-all-clients"),
        ("SR-250923-001-CCGuy-Wilson", "'-C' is doubled"),
        ("SR-250923-001-CAcme-Co-Acme-Co", "doubled"),
        ("SR-250923-001-C", "'-C' client part is empty"),
        ("SR-250230-001", "not a real date"),
        ("SR-250923-001-FIX", "none of the accepted formats"),
        ("SR-250923-01", "none of the accepted formats"),
        ("job_post_scoring_stream1_20250230094802", "not a real date"),
        ("job_post_scoring_stream1_19990929094802", "2000-2099"),
        ("job_post_scoring_1759130882000", "none of the accepted formats"),
        ("job_post_scoring_stream_20250929094802", "none of the accepted formats"),
        ("smart_resume_1759130882000_ab12c", "none of the accepted formats"),
        ("force_reset_for_testing", "none of the accepted formats"),
        ("20250925-201849-678", "none of the accepted formats"),
        ("2509252-01845", "none of the accepted formats"),
        ("250925201845", "none of the accepted formats"),
        ("250925-201845.00", "none of the accepted formats"),
        ("250925-201845.0.0", "none of the accepted formats"),
        ("[object Promise]", "none of the accepted formats"),
        ("\u0662\u0665\u0660\u0669\u0662\u0665-201845", "none of the accepted formats"),
    ],
)
def test_rejected_forms_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidRunId) as info:
        RunId.parse(text)
    assert reason in info.value.message
    assert repr(text) in info.value.message


@pytest.mark.parametrize("value", [None, 250925201845, 250925201845.0, b"250925-201845", ["250925-201845"]])
def test_non_text_is_rejected(value: object) -> None:
    with pytest.raises(InvalidRunId, match="expected text"):
        RunId.parse(value)  # type: ignore[arg-type]


def test_invalid_run_id_is_a_value_error_in_the_data_category() -> None:
    with pytest.raises(ValueError) as info:
        RunId.parse("nope")
    assert isinstance(info.value, DataError)
    assert info.value.category == "data"
    assert info.value.exit_code == 2


def test_error_message_lists_the_accepted_formats() -> None:
    with pytest.raises(InvalidRunId) as info:
        RunId.parse("nope")
    message = info.value.message
    for fragment in ("YYMMDD-HHMMSS", "<client id>", ".0", "job_<operation>_stream<N>", "SR-YYMMDD-NNN"):
        assert fragment in message


# --- construction, minting and derived IDs --------------------------------------------------------------------


def test_new_mints_in_utc_to_the_second() -> None:
    brisbane = timezone(timedelta(hours=10))
    run = RunId.new(now=datetime(2025, 9, 26, 6, 18, 45, 999_999, tzinfo=brisbane))
    assert str(run) == "250925-201845"
    assert run.started_at == datetime(2025, 9, 25, 20, 18, 45, tzinfo=UTC)


def test_new_reads_a_naive_time_as_utc() -> None:
    assert str(RunId.new(now=datetime(2025, 9, 25, 20, 18, 45))) == "250925-201845"


def test_new_defaults_to_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    run = RunId.new("Acme-Co")
    after = datetime.now(UTC)
    assert run.started_at is not None
    assert before <= run.started_at <= after
    assert run.client_id == "Acme-Co"


def test_new_validates_the_client_id() -> None:
    with pytest.raises(InvalidClientId, match="'../etc'"):
        RunId.new("../etc", now=datetime(2025, 9, 25, tzinfo=UTC))
    with pytest.raises(InvalidRunId, match="doubled"):
        RunId.new("Acme-Co-Acme-Co", now=datetime(2025, 9, 25, tzinfo=UTC))


def test_new_refuses_times_a_two_digit_year_cannot_hold() -> None:
    with pytest.raises(InvalidRunId, match="2000-2099"):
        RunId.new(now=datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))
    with pytest.raises(InvalidRunId, match="2000-2099"):
        RunId.new(now=datetime(2100, 1, 1, tzinfo=UTC))


def test_constructor_validates_base_client_and_started_at() -> None:
    with pytest.raises(InvalidRunId):
        RunId("2509-201845")
    with pytest.raises(InvalidRunId):
        RunId("250925-201845", "a/b")
    with pytest.raises(InvalidRunId, match="does not match the base"):
        RunId("250925-201845", started_at=datetime(2025, 9, 25, 20, 18, 46, tzinfo=UTC))
    assert RunId("250925-201845", started_at=datetime(2025, 9, 25, 20, 18, 45, tzinfo=UTC)).started_at


def test_for_client_adds_the_suffix_once() -> None:
    base = RunId.parse("250925-201845")
    client_run = base.for_client("Acme-Co")
    assert str(client_run) == "250925-201845-Acme-Co"
    assert client_run.started_at == base.started_at
    assert client_run.for_client("Acme-Co") is client_run
    assert str(client_run.for_client("Acme-Co")) == "250925-201845-Acme-Co"


def test_for_client_refuses_a_different_client() -> None:
    client_run = RunId.parse("250925-201845-Acme-Co")
    with pytest.raises(InvalidRunId, match="already belongs to client 'Acme-Co'"):
        client_run.for_client("Globex")


def test_for_client_validates_the_client() -> None:
    with pytest.raises(InvalidRunId, match="not a valid client ID"):
        RunId.parse("250925-201845").for_client("../x")


def test_base_id_drops_the_client() -> None:
    client_run = RunId.parse("250925-201845-Acme-Co")
    assert client_run.base_id == RunId("250925-201845")
    assert client_run.base_id.started_at == client_run.started_at
    base = RunId.parse("250925-201845")
    assert base.base_id is base
    assert RunId.parse("SR-250923-001-S1-CGuy-Wilson").base_id == RunId("SR-250923-001")


def test_next_second_rolls_over_the_day_and_year() -> None:
    assert str(RunId.parse("250925-201845").next_second()) == "250925-201846"
    assert str(RunId.parse("251231-235959-Acme-Co").next_second()) == "260101-000000-Acme-Co"
    assert str(RunId.parse("240228-235959").next_second()) == "240229-000000"


def test_next_second_is_refused_for_legacy_ids() -> None:
    with pytest.raises(InvalidRunId, match="no next second"):
        RunId.parse("SR-250923-001").next_second()


def test_equality_and_hash_use_base_and_client() -> None:
    a = RunId.parse("250925-201845-Acme-Co")
    b = RunId("250925-201845", "Acme-Co")
    assert a == b
    assert hash(a) == hash(b)
    assert a != RunId("250925-201845")
    assert a != RunId("250925-201845", "Globex")
    assert len({a, b, RunId.parse("job_x_stream1_20250925201845").for_client("Acme-Co")}) == 1


def test_run_id_is_frozen() -> None:
    run = RunId.parse("250925-201845")
    with pytest.raises(AttributeError):
        run.client_id = "Acme-Co"  # type: ignore[misc]


def test_importing_runids_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys, leadkit.runids, leadkit.durations; "
        "heavy = {'pandas', 'panel', 'papermill', 'pyairtable', 'httpx', 'pydantic'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- client IDs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "client_id",
    ["Acme-Co", "Globex", "Initech_2", "umbrella.corp", "Dean-Hobin", "a", "0", "_x", "a" * 64, "x.", "v1.0"],
)
def test_valid_client_ids_come_back_unchanged(client_id: str) -> None:
    assert validate_client_id(client_id) is client_id
    assert CLIENT_ID_PATTERN.fullmatch(client_id)


@pytest.mark.parametrize(
    "client_id",
    [
        "",
        "a" * 65,
        ".hidden",
        "-Acme",
        "..",
        "a..b",
        "../x",
        "a/b",
        "a\\b",
        "Acme Co",
        " Acme",
        "Acme\n",
        "Acme\t",
        "Acme'); DROP",
        "{Client ID}",
        'Acme"',
        "Acmé",
        "Acme:Co",
        "Acme*",
    ],
)
def test_invalid_client_ids_are_rejected_with_the_rules(client_id: str) -> None:
    with pytest.raises(InvalidClientId) as info:
        validate_client_id(client_id)
    assert "1 to 64 characters" in info.value.message
    assert isinstance(info.value, ValueError)


def test_client_id_message_names_the_input() -> None:
    with pytest.raises(InvalidClientId, match=r"'\.\./x'"):
        validate_client_id("../x")
    with pytest.raises(InvalidClientId, match="65 characters long"):
        validate_client_id("b" * 65)


def test_non_text_client_id_is_rejected() -> None:
    with pytest.raises(InvalidClientId, match="not text"):
        validate_client_id(42)  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------------------------

_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
_REST = _FIRST + ".-"

client_ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_FIRST),
    st.text(alphabet=_REST, max_size=63),
).filter(lambda c: ".." not in c)

hyphenated_client_ids = st.lists(st.text(alphabet=_FIRST, min_size=1, max_size=10), min_size=2, max_size=5).map(
    "-".join
)

times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2099, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
)


@settings(max_examples=300, deadline=None)
@given(now=times, client_id=st.none() | client_ids | hyphenated_client_ids)
def test_parse_of_str_round_trips(now: datetime, client_id: str | None) -> None:
    try:
        run = RunId.new(client_id, now=now)
    except InvalidRunId:
        assert client_id is not None
        half = len(client_id) // 2
        assert client_id[:half] == client_id[half + 1 :]  # only a doubled client is refused
        return
    parsed = RunId.parse(str(run))
    assert parsed == run
    assert parsed.started_at == now.replace(microsecond=0)
    assert parsed.client_id == client_id


@settings(max_examples=200, deadline=None)
@given(now=times, client_id=client_ids | hyphenated_client_ids)
def test_for_client_then_base_id_round_trips(now: datetime, client_id: str) -> None:
    base = RunId.new(now=now)
    try:
        client_run = base.for_client(client_id)
    except InvalidRunId:
        return
    assert client_run.base_id == base
    assert RunId.parse(str(client_run)).base_id == base


@settings(max_examples=200, deadline=None)
@given(
    day=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    counter=st.integers(0, 999),
    client_id=st.none() | client_ids | hyphenated_client_ids,
)
def test_legacy_sr_round_trips(day: date, counter: int, client_id: str | None) -> None:
    base = f"SR-{day:%y%m%d}-{counter:03d}"
    try:
        run = RunId(base, client_id)
    except InvalidRunId:
        assume(False)
        return
    assert RunId.parse(str(run)) == run


@settings(max_examples=500, deadline=None)
@given(
    text=st.text()
    | st.from_regex(r"\A\d{6}-\d{6}(-.{0,20})?\Z")
    | st.from_regex(r"\ASR-\d{6}-\d{3}(-T\d{4})?(-S\d)?(-C.{0,10})?(\.0)?\Z")
    | st.from_regex(r"\Ajob_\w{1,10}_stream\d_\d{14}(\.0)?\Z")
)
def test_parse_of_any_text_returns_or_raises_invalid_run_id(text: str) -> None:
    try:
        run = RunId.parse(text)
    except InvalidRunId:
        return
    assert isinstance(run, RunId)
    assert RunId.parse(str(run)) == run
