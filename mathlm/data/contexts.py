"""Names, objects and containers that word problems are dressed in (and the mutator swaps)."""
from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Person", "Item", "PEOPLE", "ITEMS", "person", "people", "item"]


@dataclass(frozen=True)
class Person:
    name: str
    they: str  # subject pronoun
    their: str  # possessive

    @property
    def They(self) -> str:  # noqa: N802 - sentence-initial form
        return self.they.capitalize()


@dataclass(frozen=True)
class Item:
    one: str  # singular
    many: str  # plural
    box: str  # container, singular
    boxes: str  # container, plural


PEOPLE = [
    Person("Tom", "he", "his"), Person("Maria", "she", "her"), Person("Ali", "he", "his"),
    Person("Lena", "she", "her"), Person("Sam", "he", "his"), Person("Priya", "she", "her"),
    Person("Ken", "he", "his"), Person("Ana", "she", "her"), Person("Omar", "he", "his"),
    Person("Zoe", "she", "her"), Person("Ivan", "he", "his"), Person("Mei", "she", "her"),
    Person("Leo", "he", "his"), Person("Sara", "she", "her"), Person("Raj", "he", "his"),
    Person("Nina", "she", "her"),
]

ITEMS = [
    Item("apple", "apples", "bag", "bags"), Item("pencil", "pencils", "box", "boxes"),
    Item("marble", "marbles", "jar", "jars"), Item("sticker", "stickers", "sheet", "sheets"),
    Item("cookie", "cookies", "tray", "trays"), Item("card", "cards", "pack", "packs"),
    Item("egg", "eggs", "carton", "cartons"), Item("book", "books", "shelf", "shelves"),
    Item("flower", "flowers", "bunch", "bunches"), Item("shell", "shells", "bucket", "buckets"),
    Item("orange", "oranges", "crate", "crates"), Item("bead", "beads", "string", "strings"),
]


def person(rng: random.Random) -> Person:
    return rng.choice(PEOPLE)


def people(rng: random.Random, k: int = 2) -> list[Person]:
    return rng.sample(PEOPLE, k)


def item(rng: random.Random) -> Item:
    return rng.choice(ITEMS)
