"""Surface templates of the synthetic world: story frames that verbalise a chain of operations.

A frame names its items and gives sentence variants for the opening state, each operation and
the final question. Placeholders: ``{name}`` (a person), ``{item}`` (plural noun), ``{a}`` (the
start value), ``{b}`` (the operand). Division always means "split into ``b`` equal parts and keep
one", multiplication "``b`` times as many as before", so the state stays one quantity of one item.
All text is plain ASCII.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NAMES: tuple[str, ...] = (
    "Tom", "Ana", "Ben", "Mia", "Sam", "Lily", "Max", "Zoe", "Leo", "Ella",
    "Omar", "Nina", "Raj", "Kim", "Ivan", "Sara", "Luis", "Emma", "Noah", "Ava",
)  # fmt: skip


@dataclass(frozen=True)
class SurfaceTemplate:
    """One story frame (its ``id`` is the template id used for held-out splits)."""

    id: str
    items: tuple[str, ...]
    intro: tuple[str, ...]
    steps: Mapping[str, tuple[str, ...]]  # op -> sentence variants
    question: tuple[str, ...]


TEMPLATES: tuple[SurfaceTemplate, ...] = (
    SurfaceTemplate(
        id="market",
        items=("apples", "pears", "lemons", "plums", "eggs"),
        intro=("{name} has {a} {item}.", "{name} starts the day with {a} {item}."),
        steps={
            "add": ("{name} buys {b} more {item}.", "A friend gives {name} {b} more {item}."),
            "sub": ("{name} sells {b} {item}.", "{name} gives {b} {item} to a neighbor."),
            "mul": ("After a trip to the market, {name} has {b} times as many {item} as before.",
                    "{name} now has {b} times as many {item} as before."),
            "div": ("{name} packs the {item} into {b} equal bags and gives away all but one bag.",),
        },
        question=("How many {item} does {name} have now?", "How many {item} does {name} have at the end?"),
    ),
    SurfaceTemplate(
        id="farm",
        items=("sheep", "goats", "hens", "ducks", "cows"),
        intro=("There are {a} {item} on {name}'s farm.", "{name}'s farm has {a} {item}."),
        steps={
            "add": ("{b} more {item} arrive at the farm.", "{name} buys {b} more {item}."),
            "sub": ("{name} sells {b} {item} at the fair.", "{b} {item} run away from the farm."),
            "mul": ("By spring the farm has {b} times as many {item} as before.",
                    "The number of {item} grows to {b} times what it was."),
            "div": ("{name} puts the {item} into {b} equal pens and sells all but one pen.",),
        },
        question=("How many {item} are on the farm now?", "How many {item} does the farm have at the end?"),
    ),
    SurfaceTemplate(
        id="library",
        items=("books", "comics", "maps", "magazines"),
        intro=("{name} has {a} {item} on a shelf.", "A shelf in {name}'s room holds {a} {item}."),
        steps={
            "add": ("{name} puts {b} more {item} on the shelf.", "{name} adds {b} new {item} to the shelf."),
            "sub": ("{name} lends {b} {item} to a classmate.", "{name} takes {b} {item} off the shelf."),
            "mul": ("{name} fills the shelf until it holds {b} times as many {item} as before.",
                    "Soon the shelf holds {b} times as many {item} as before."),
            "div": ("{name} sorts the {item} into {b} equal stacks and gives away all but one stack.",),
        },
        question=("How many {item} are on the shelf now?", "How many {item} does the shelf hold at the end?"),
    ),
    SurfaceTemplate(
        id="school",
        items=("pencils", "stickers", "markers", "erasers"),
        intro=("{name} has {a} {item} at school.", "{name} keeps {a} {item} in a desk."),
        steps={
            "add": ("The teacher gives {name} {b} more {item}.", "{name} finds {b} more {item}."),
            "sub": ("{name} loses {b} {item}.", "{name} gives {b} {item} to a classmate."),
            "mul": ("After a swap, {name} has {b} times as many {item} as before.",
                    "{name} now has {b} times as many {item} as before."),
            "div": ("{name} splits the {item} into {b} equal piles and gives away all but one pile.",),
        },
        question=("How many {item} does {name} have now?", "How many {item} does {name} keep in the end?"),
    ),
    SurfaceTemplate(
        id="bakery",
        items=("cookies", "muffins", "buns", "pies"),
        intro=("{name} bakes {a} {item}.", "{name}'s tray holds {a} {item}."),
        steps={
            "add": ("{name} bakes {b} more {item}.", "{name} takes {b} more {item} out of the oven."),
            "sub": ("Customers buy {b} {item}.", "{name} eats {b} {item}."),
            "mul": ("{name} keeps baking until there are {b} times as many {item} as before.",
                    "By noon there are {b} times as many {item} as before."),
            "div": ("{name} packs the {item} into {b} equal boxes and sells all but one box.",),
        },
        question=("How many {item} are left now?", "How many {item} does {name} have at the end?"),
    ),
    SurfaceTemplate(
        id="games",
        items=("marbles", "cards", "coins", "stamps"),
        intro=("{name} has {a} {item}.", "{name} collects {a} {item}."),
        steps={
            "add": ("{name} wins {b} more {item} in a game.", "{name} finds {b} more {item}."),
            "sub": ("{name} loses {b} {item} in a game.", "{name} trades away {b} {item}."),
            "mul": ("After a lucky day, {name} has {b} times as many {item} as before.",
                    "{name} now owns {b} times as many {item} as before."),
            "div": ("{name} splits the {item} into {b} equal piles and gives away all but one pile.",),
        },
        question=("How many {item} does {name} have now?", "How many {item} does {name} own at the end?"),
    ),
    SurfaceTemplate(
        id="garden",
        items=("tulips", "roses", "daisies", "carrots"),
        intro=("{name} plants {a} {item} in a garden.", "There are {a} {item} in {name}'s garden."),
        steps={
            "add": ("{name} plants {b} more {item}.", "{b} more {item} come up after the rain."),
            "sub": ("{name} picks {b} {item}.", "Rabbits eat {b} of the {item}."),
            "mul": ("By summer there are {b} times as many {item} as before.",
                    "The {item} spread until there are {b} times as many as before."),
            "div": ("{name} splits the {item} into {b} equal beds and digs up all but one bed.",),
        },
        question=("How many {item} are in the garden now?", "How many {item} grow in the garden at the end?"),
    ),
    SurfaceTemplate(
        id="aquarium",
        items=("fish", "snails", "shrimp", "frogs"),
        intro=("{name} keeps {a} {item} in a tank.", "A tank in {name}'s room has {a} {item}."),
        steps={
            "add": ("{name} adds {b} more {item} to the tank.", "{b} baby {item} are born in the tank."),
            "sub": ("{name} moves {b} {item} to a pond.", "{name} gives {b} {item} to a friend."),
            "mul": ("A year later the tank has {b} times as many {item} as before.",
                    "The {item} multiply until there are {b} times as many as before."),
            "div": ("{name} splits the {item} into {b} equal tanks and gives away all but one tank.",),
        },
        question=("How many {item} are in the tank now?", "How many {item} does {name} keep at the end?"),
    ),
)  # fmt: skip

TEMPLATE_IDS: tuple[str, ...] = tuple(t.id for t in TEMPLATES)
TEMPLATES_BY_ID: dict[str, SurfaceTemplate] = {t.id: t for t in TEMPLATES}

# The retention skill: bare questions, no story. {nums} is "14, 7 and 22" / "14, 7 or 22".
RETENTION_QUESTIONS: dict[str, tuple[str, ...]] = {
    "largest": ("What is the largest of {nums}?", "Which is the largest number: {nums_or}?"),
    "smallest": ("What is the smallest of {nums}?", "Which is the smallest number: {nums_or}?"),
    "bare": ("What is {a} {sym} {b}?", "Compute {a} {sym} {b}."),
}
RETENTION_KINDS: tuple[str, ...] = tuple(RETENTION_QUESTIONS)
