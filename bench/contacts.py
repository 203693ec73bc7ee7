"""Benchmark the contact matcher on 100,000 generated contacts.

Prints the build time and the median time of one `Directory.match` per path. Goals:
exact under 0.1 ms, fuzzy under 5 ms.

    .venv/bin/python bench/contacts.py [--contacts N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triage.core.contacts import Contact, Directory  # noqa: E402

_FIRST = (
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew "
    "Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Dorothy George Melissa Timothy "
    "Deborah Ronald Stephanie Edward Rebecca Jason Sharon Jeffrey Laura Ryan Cynthia Jacob "
    "Kathleen Gary Amy Nicholas Angela Eric Shirley Jonathan Anna Stephen Brenda Larry Pamela "
    "Justin Emma Scott Nicole Brandon Helen Benjamin Samantha Samuel Katherine Gregory Christine "
    "Alexander Debra Frank Rachel Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria "
    "Jerry Heather Tyler Diane Aaron Ruth Jose Julie Adam Olivia Nathan Joyce Henry Virginia "
    "Lukas Lena Jonas Mia Felix Hannah Leon Sophie Paul Marie Jürgen Anke Sven Katrin Björn Ines"
)
_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips "
    "Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers "
    "Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson "
    "Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo "
    "Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell "
    "Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson "
    "Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera "
    "Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez "
    "McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns "
    "Crawford Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt "
    "Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer "
    "Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant "
    "Dunn Kelley Spencer Hawkins Arnold Pierce Hansen Peters Santos Hart Bradley Knight Elliott "
    "Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado Ray Delgado Berry "
    "Perkins Hoffman Johnston Matthews Pena Richards Contreras Willis Carpenter Lawrence Sandoval "
    "Müller Schneider Fischer Weber Becker Wagner Schulz Hoffmann Koch Richter Klein Wolf Neumann "
    "Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Schmitt Werner Krause Meier Lehmann"
)
_UNKNOWN = "Okafor Lindqvist Nakamura Oyelaran Papadopoulos Kowalczyk Iversen Quispe Achterberg"
FIRST, LAST, UNKNOWN = _FIRST.split(), _LAST.split(), _UNKNOWN.split()
PLANS = ("premium", "standard", "basic")
ZONES = ("America/New_York", "Europe/Berlin", "America/Chicago", "UTC", "Asia/Tokyo")


def generate(count: int, rng: random.Random) -> list[Contact]:
    """`count` contacts with unique names (first, optional middle initial, last)."""
    names: set[str] = set()
    contacts = []
    while len(contacts) < count:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        middle = rng.choice("ABCDEFGHJKLMNPRSTW") + ". " if rng.random() < 0.7 else ""
        name = f"{first} {middle}{last}"
        if name in names:
            continue
        names.add(name)
        n = len(contacts)
        company = n % 4000
        local = f"{first}.{middle[:1]}{last}{n}".lower().replace(". ", ".")
        contacts.append(
            Contact.create(
                f"{local}@company{company}.example",
                name,
                f"Company {company}",
                plan=PLANS[company % 3],
                timezone=ZONES[company % 5],
                vip=n % 97 == 0,
                aliases=[f"{local}.alt@company{company}.example"] if n % 10 == 0 else [],
            )
        )
    return contacts


def typo(name: str, rng: random.Random) -> str:
    """One realistic slip: a dropped, doubled or swapped letter."""
    i = rng.randrange(1, len(name) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return name[:i] + name[i + 1 :]
    if kind == 1:
        return name[:i] + name[i] + name[i:]
    return name[: i - 1] + name[i] + name[i - 1] + name[i + 1 :]


def measure(
    calls: list[tuple[str, str, Contact | None]], directory: Directory, repeat: int = 3
) -> tuple[float, float, str]:
    """Median and 95th percentile in µs (best of `repeat` per call), and the outcomes."""
    samples = []
    kinds: dict[str, int] = {}
    right = 0
    for address, display, expected in calls:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            m = directory.match(address, display)
            best = min(best, time.perf_counter() - start)
        samples.append(best)
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
        right += expected is not None and m.contact == expected
    outcome = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    if any(expected for _, _, expected in calls):
        outcome += f"; right contact {right}"
    p95 = statistics.quantiles(samples, n=20)[-1]
    return statistics.median(samples) * 1e6, p95 * 1e6, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    contacts = generate(args.contacts, rng)
    start = time.perf_counter()
    directory = Directory.build(contacts)
    build = time.perf_counter() - start

    sample = rng.sample(contacts, 2000)
    exact = [(c.email.upper(), c.name, c) for c in sample]
    plus = [(c.email.replace("@", "+tag@"), "", c) for c in sample]
    domain = [(f"new.person{i}@{c.domain}", "Someone New", None) for i, c in enumerate(sample)]
    # Fuzzy runs for senders on free-mail domains: a known name with one slip, and an
    # unknown person whose first name is common (the largest blocks: the slow case).
    slips = [(f"p{i}@gmail.com", typo(c.name, rng), c) for i, c in enumerate(sample[:500])]
    strangers = [
        (f"q{i}@gmail.com", f"{rng.choice(FIRST)} {rng.choice(UNKNOWN)}", None) for i in range(500)
    ]

    print(f"contacts: {len(directory):,}  build: {build:.2f} s")
    rows = (
        ("exact", exact, 100),
        ("plus", plus, 100),
        ("domain", domain, 100),
        ("fuzzy: known name, one typo", slips, 5000),
        ("fuzzy: unknown name", strangers, 5000),
    )
    for label, calls, goal in rows:
        median, p95, outcome = measure(calls, directory)
        verdict = "ok" if median < goal else "SLOW"
        print(
            f"{label:28s} median {median:7.1f} µs  p95 {p95:7.1f} µs  goal < {goal} µs {verdict}"
            f"  ({outcome})"
        )


if __name__ == "__main__":
    main()
