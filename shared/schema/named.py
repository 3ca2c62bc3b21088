"""Named entries: a list of sections each named by one of its settings, or a mapping of names
to such sections, the name then being the key (a build spec's `steps:` and `services:`).

    steps:                        steps:
      - name: test                  test:
        commands: [pytest]            commands: [pytest]

Either way an entry is said by its index until its name is read (`steps[0].name`), then by
its name (`steps.test.commands`), which is what the one who wrote it looks for; the names
are distinct.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from shared.schema.kinds import Kind, ListCheck, ListOf
from shared.schema.sections import Section, schema_of

if TYPE_CHECKING:
    from shared.schema.reading import Reading


class Named(ListOf):
    """Sections (`entry`) named by their setting `key` (its field's name and its key alike),
    given as a list or as a mapping of names to entries (an entry there may still give its
    name itself, which then wins). `duplicate` is what a second entry of one name is told,
    `{name}` standing for the name; a name is held against the others only once its entry
    reads whole, so that one mistake is said once."""

    def __init__(self, entry: Section, *, key: str = "name", duplicate: str = "another entry is named {name!r}",
                 check: ListCheck | None = None, **counts: Any) -> None:
        """`counts`: as a ListOf's (Counts)."""
        super().__init__(entry, check=check, **counts)
        assert schema_of(entry.cls).declared(key).required, f"{entry.cls.__name__} requires its {key}"
        self.entry, self.key, self.duplicate = entry, key, duplicate
        self.noun = "a list or a mapping of names"

    def read(self, value: Any, at: str, reading: Reading) -> tuple:
        if isinstance(value, dict):
            value = [{self.key: name, **entry} if isinstance(entry, dict) else entry for name, entry in value.items()]
        self.counted(value)
        before = len(reading.problems)
        items: list[tuple[int, Any]] = []
        names: set[Any] = set()
        for index, entry in enumerate(value):
            started = len(reading.problems)
            item = reading.value(_Entry(self, at), entry, f"{at}[{index}]")
            if item is reading.REFUSED:
                continue
            name = getattr(item, self.key)
            if len(reading.problems) == started:
                if name in names:
                    reading.fail(f"{at}[{index}]", self.duplicate.format(name=name))
                names.add(name)
            items.append((index, item))
        self.checked(items, len(reading.problems) == before, at, reading)
        return tuple(item for _, item in items)

    def nested(self) -> tuple[tuple[Section, str], ...]:
        return ((self.entry, "[]"),)

    def json(self, defs: dict) -> dict:
        reference = self.entry.json(defs)
        described = defs[self.entry.cls.__name__]
        # The entry's section is described without its name, which a mapping's key gives;
        # a list's entries name themselves.
        described["required"] = [key for key in described.get("required", []) if key != self.key]
        if not described["required"]:
            del described["required"]
        name = schema_of(self.entry.cls).declared(self.key).kind.json(defs)
        counts = {"minItems": self.min_items or None, "maxItems": self.max_items}
        listed = {"type": "array", "items": {"allOf": [reference, {"required": [self.key]}]},
                  **{keyword: count for keyword, count in counts.items() if count is not None}}
        mapped = {"type": "object", "propertyNames": name, "additionalProperties": reference,
                  **{keyword.replace("Items", "Properties"): count for keyword, count in counts.items()
                     if count is not None}}
        return {"anyOf": [listed, mapped]}

    def text(self, link: Callable[[type], str]) -> str:
        count = f"up to {self.max_items} " if self.max_items is not None else ""
        return f"list of {count}(mapping: {link(self.entry.cls)}), or a mapping of their {self.key}s to them"


class _Entry(Kind):
    """How one entry of a Named list at `at` is read: at its index (`steps[0]`) until its name
    holds, then by its name (`steps.test`)."""

    def __init__(self, named: Named, at: str) -> None:
        self.named, self.at = named, at

    def read(self, entry: Any, indexed: str, reading: Reading) -> Any:
        named = self.named
        if not isinstance(entry, dict):
            raise named.entry.expected(entry)
        cls = named.entry.cls
        mapping = reading.known(cls, entry, indexed)
        declared = schema_of(cls).declared(named.key)
        before = len(reading.problems)
        name, _ = reading.setting(cls, declared, mapping, (indexed, ""))
        where = f"{self.at}.{name}" if len(reading.problems) == before else indexed
        rest = {key: value for key, value in mapping.items() if key != named.key}
        return reading.section(cls, rest, where, fixed={declared.name: name})
