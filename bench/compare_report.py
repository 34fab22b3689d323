"""A Markdown table from console_compare.py's --json files: baseline against HEAD.

    python bench/compare_report.py --base a.json [b.json ...] --head c.json [d.json ...]

The samples of every pass of one code are pooled; a page's median and p95 are
those of the pool. The ratio is HEAD's median over the baseline's (and p95 over p95).
"""

from __future__ import annotations

import argparse
import json
import statistics


def pooled(paths: list[str]) -> dict[str, list[float] | str]:
    pages: dict[str, list[float] | str] = {}
    for path in paths:
        with open(path) as file:
            for name, samples in json.load(file)["pages"].items():
                if isinstance(samples, str) or isinstance(pages.get(name), str):
                    pages[name] = samples if isinstance(samples, str) else pages[name]
                else:
                    pages.setdefault(name, []).extend(samples)  # type: ignore[union-attr]
    return pages


def figures(samples: list[float] | str | None) -> tuple[float, float] | None:
    if not isinstance(samples, list) or not samples:
        return None
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", nargs="+", required=True)
    parser.add_argument("--head", nargs="+", required=True)
    parser.add_argument("--budget", type=float, default=150.0, help="p95 budget, ms")
    args = parser.parse_args()
    base, head = pooled(args.base), pooled(args.head)
    print("| page | baseline median / p95 ms | HEAD median / p95 ms | HEAD / baseline |")
    print("| --- | --- | --- | --- |")
    for name in dict.fromkeys([*base, *head]):
        b, h = figures(base.get(name)), figures(head.get(name))

        def cell(f: tuple[float, float] | None, raw: object) -> str:
            if f is None:
                return f"failed: {raw}" if raw is not None else "—"
            over = " ✗" if f[1] > args.budget else ""
            return f"{f[0]:.1f} / {f[1]:.1f}{over}"

        ratio = f"{h[0] / b[0]:.2f}, {h[1] / b[1]:.2f}" if b and h else "—"
        print(f"| {name} | {cell(b, base.get(name))} | {cell(h, head.get(name))} | {ratio} |")


if __name__ == "__main__":
    main()
