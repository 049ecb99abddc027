"""Small helpers shared by the data tests: real LFW paths and landmarks."""

from __future__ import annotations

import shutil
from pathlib import Path


def pairs_image_names(pairs_file: Path) -> list[str]:
    """Every image named by an LFW `pairs.txt` (View 2 format), sorted, without duplicates."""
    names = set()
    lines = pairs_file.read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        fields = line.split()
        if len(fields) == 3:
            person, first, second = fields
            names.add(f"{person}/{person}_{int(first):04d}.jpg")
            names.add(f"{person}/{person}_{int(second):04d}.jpg")
        elif len(fields) == 4:
            names.add(f"{fields[0]}/{fields[0]}_{int(fields[1]):04d}.jpg")
            names.add(f"{fields[2]}/{fields[2]}_{int(fields[3]):04d}.jpg")
    return sorted(names)


def people_with_images(lfw_dir: Path, count: int, min_images: int = 2) -> list[str]:
    """The first `count` people (alphabetically) with at least `min_images` images."""
    chosen = []
    for person in sorted(p.name for p in (lfw_dir / "images").iterdir()):
        if len(list((lfw_dir / "images" / person).glob("*.jpg"))) >= min_images:
            chosen.append(person)
            if len(chosen) == count:
                break
    return chosen


def copy_people(lfw_dir: Path, photos: Path, count: int, min_images: int, per_person: int) -> list[str]:
    """Copies up to `per_person` photos of the first `count` people with `min_images` images into
    `photos/<person>/`; returns their relative paths (`Person/Person_0001.jpg`), as landmarks.txt names them."""
    names = []
    for person in people_with_images(lfw_dir, count, min_images=min_images):
        (photos / person).mkdir(parents=True)
        for path in sorted((lfw_dir / "images" / person).glob("*.jpg"))[:per_person]:
            shutil.copy(path, photos / person / path.name)
            names.append(f"{person}/{path.name}")
    return names
