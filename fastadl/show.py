"""``python -m fastadl.show GENOTYPE --out DIR``: draw a genotype's cell and network path.

GENOTYPE is 'paper', 'paper:N' (the paper's cell on the first N layers of its path), a
genotype.json, or a run directory holding one (a search's or a retraining's). Writes
DIR/genotype_cell.png/.svg and DIR/genotype_path.png/.svg (matplotlib only: no Graphviz
needed) and prints the genotype.

examples:
  python -m fastadl.show paper --out figures/
  python -m fastadl.show runs/search-20261206-101500 --out runs/search-20261206-101500/plots
"""

from __future__ import annotations

import argparse
import sys

from fastadl.runtime.cli import fail, parse


def describe(genotype) -> str:
    """The genotype in a few lines: each block's two (op ← input) branches and the path."""
    from fastadl.search.diagrams import node_name

    lines = []
    for b, pair in enumerate(genotype.blocks()):
        branches = ", ".join(f"{op} ← {node_name(src)}" for op, src in pair)
        lines.append(f"block {b + 1}: {branches}")
    rates = " ".join(f"/{4 * 2**level}" for level in genotype.path)
    lines.append(f"path: {' '.join(map(str, genotype.path))} ({rates})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        """The examples as written, the defaults shown."""

    doc = __doc__.strip().replace("``", "").split("\n\n", 1)[1]
    parser = argparse.ArgumentParser(
        prog="python -m fastadl.show", description=doc, formatter_class=Formatter
    )
    parser.add_argument(
        "genotype", metavar="GENOTYPE", help="paper, paper:N, a genotype.json or a run directory"
    )
    parser.add_argument("--out", default=".", metavar="DIR", help="folder for the four files")
    args = parse(parser, argv)
    if isinstance(args, int):
        return args

    from fastadl.search.diagrams import save_diagrams
    from fastadl.space.genotype import GenotypeError
    from fastadl.train.model import load_genotype

    try:
        genotype = load_genotype(args.genotype)
        paths = save_diagrams(genotype, args.out)
    except (GenotypeError, OSError) as e:
        return fail(str(e))
    print(describe(genotype))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
