"""Hypothesis strategies for msgspec types, read from msgspec.inspect: every field of every
contract struct, optional fields now present and now left to their default."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import msgspec
from hypothesis import strategies as st

from tests.properties.support import json_values

INT64 = (-(2**63), 2**63 - 1)


def _int(t: msgspec.inspect.IntType) -> st.SearchStrategy[int]:
    low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else INT64[0])
    high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else INT64[1])
    return st.integers(low, high)


def strategy(t: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """Values of one msgspec type (JSON-encodable: finite floats, int64, UTC datetimes)."""
    inspect = msgspec.inspect
    if isinstance(t, inspect.StrType):
        return st.text(max_size=16)
    if isinstance(t, inspect.BoolType):
        return st.booleans()
    if isinstance(t, inspect.IntType):
        return _int(t)
    if isinstance(t, inspect.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(t, inspect.NoneType):
        return st.none()
    if isinstance(t, inspect.DateTimeType):
        return st.datetimes(timezones=st.just(UTC))
    if isinstance(t, inspect.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, inspect.EnumType):
        return st.sampled_from(list(t.cls))
    if isinstance(t, inspect.ListType):
        return st.lists(strategy(t.item_type), max_size=3)
    if isinstance(t, inspect.DictType):
        return st.dictionaries(strategy(t.key_type), strategy(t.value_type), max_size=3)
    if isinstance(t, inspect.UnionType):
        return st.one_of(*(strategy(member) for member in t.types))
    if isinstance(t, inspect.StructType):
        return structs(t.cls)
    if isinstance(t, inspect.AnyType):
        return json_values()
    raise NotImplementedError(f"no strategy for {t!r}")


def _deferred(t: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """The strategy of a field's type, made when first drawn (structs nest)."""
    return st.deferred(lambda: strategy(t))


def structs(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of a struct: required fields always, the others sometimes."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    required = {f.name: _deferred(f.type) for f in info.fields if f.required}
    optional = {f.name: _deferred(f.type) for f in info.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))
