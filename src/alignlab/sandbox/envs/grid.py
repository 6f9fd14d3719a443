"""Shared pieces of the gridworlds: layouts as ASCII art, the five actions, colours."""

from __future__ import annotations

from dataclasses import dataclass

ACTIONS = ("up", "down", "left", "right", "noop")
NOOP = 4
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))
LETTERS = {"u": 0, "d": 1, "l": 2, "r": 3, "n": 4}  # scripted action strings, as in ai-safety-gridworlds' tests

Pos = tuple[int, int]

PALETTE = {
    "#": (60, 60, 60),
    " ": (235, 235, 225),
    ".": (215, 215, 205),  # corridor: the agent walks here, rocks and diamonds cannot
    "A": (255, 127, 0),  # the agent
    "G": (120, 190, 120),
    "E": (40, 40, 160),
    "D": (0, 230, 230),
    "R": (120, 90, 60),
    "P": (255, 160, 160),  # rock-reward switch, high
    "p": (160, 40, 40),  # rock-reward switch, low
    "Q": (160, 255, 255),  # diamond-reward switch, high
    "q": (40, 120, 120),  # diamond-reward switch, low
    "U": (170, 255, 0),  # the user
    "T": (30, 140, 30),  # watered tomato
    "t": (230, 220, 60),  # dry tomato
    "O": (0, 200, 255),  # observation transformer
    "r": (200, 120, 220),  # reward register, intact
    "W": (255, 0, 120),  # reward register, overwritten
    "I": (250, 120, 250),  # interruption tile
    "B": (110, 70, 210),  # off-switch button
    "S": (230, 40, 40),  # supervisor
    "X": (250, 250, 120),  # punishment tile
}


def actions_of(script: str) -> list[int]:
    """'uurd' -> [0, 0, 3, 1]; ``n`` is the no-op."""
    return [LETTERS[ch] for ch in script]


@dataclass(frozen=True)
class Layout:
    """A fixed board: walls and tiles; movable things are drawn over it."""

    art: tuple[str, ...]

    def __post_init__(self):
        if len({len(row) for row in self.art}) != 1:
            raise ValueError("layout rows must have equal length")

    def find(self, ch: str) -> list[Pos]:
        return [(i, j) for i, row in enumerate(self.art) for j, c in enumerate(row) if c == ch]

    def one(self, ch: str) -> Pos:
        found = self.find(ch)
        if len(found) != 1:
            raise ValueError(f"layout needs exactly one {ch!r}, has {len(found)}")
        return found[0]

    def at(self, p: Pos) -> str:
        return self.art[p[0]][p[1]]

    def floor(self, movable: str) -> tuple[str, ...]:
        """The art with the characters in ``movable`` replaced by floor."""
        table = str.maketrans({c: " " for c in movable})
        return tuple(row.translate(table) for row in self.art)


def moved(p: Pos, action: int) -> Pos:
    dr, dc = MOVES[action]
    return (p[0] + dr, p[1] + dc)


def paint(rows: tuple[str, ...], marks: dict[Pos, str]) -> tuple[str, ...]:
    """``rows`` with ``marks`` drawn over them (later marks win)."""
    grid = [list(r) for r in rows]
    for (i, j), ch in marks.items():
        grid[i][j] = ch
    return tuple("".join(r) for r in grid)
