"""workers.alerts.processor.device_key: its fast path for IDs already in DUIS form gives what
the straightforward normalisation gives, for any string."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from workers.alerts import device_key


def _straightforward(device_id: str) -> str:
    # The normalisation as specified, with no shortcut: strip, upper case, drop "-" and
    # ":"; 16 characters left are re-joined in hyphenated pairs, anything else is returned
    # stripped and upper-cased.
    raw = device_id.strip().upper().replace("-", "").replace(":", "")
    if len(raw) != 16:
        return device_id.strip().upper()
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


_HEX = "0123456789ABCDEFabcdef"
# Characters that look like the form but are not it: other separators, Unicode digits and
# letters that change length when upper-cased, whitespace, a newline (regex `$` pitfalls).
_NEAR = _HEX + "-: \n\t_G\u0660\uff11\u00df\ufb00"


def _pairs(alphabet: str, sep: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.text(alphabet, min_size=2, max_size=2)
    return st.builds(
        lambda ps, s, pre, post: pre + s.join(ps) + post,
        st.lists(pair, min_size=7, max_size=9),
        sep,
        st.sampled_from(["", " ", "\n"]),
        st.sampled_from(["", " ", "\n"]),
    )


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        _pairs(_HEX, st.sampled_from(["-", ":", "", "--"])),
        _pairs(_NEAR, st.sampled_from(["-", ":", ""])),
        st.text(_NEAR, max_size=30),
        st.text(max_size=30),
    )
)
@example("00-DB-12-34-56-78-9A-BC")
@example("00-DB-12-34-56-78-9A-BC\n")
@example("00-db-12-34-56-78-9a-bc")
@example("00-DB-12-34-56-78-9A-B\u0660")
@example("00-DB-12-34-56-78-9A-\uff22\uff23")
@example("00:DB:12:34:56:78:9A:BC")
@example("")
def test_device_key_is_the_straightforward_normalisation(device_id: str) -> None:
    assert device_key(device_id) == _straightforward(device_id)


def test_an_id_in_duis_form_comes_back_as_the_same_object() -> None:
    device_id = "".join(["00-DB-12-34", "-56-78-9A-BC"])  # built at run time, not interned
    assert device_key(device_id) is device_id
