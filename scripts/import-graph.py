#!/usr/bin/env python3
"""The server library's import graph, file by file, from its `use crate::`
(and `super::`) paths: prints every circle of files (strongly connected
component of more than one file) and exits 1 if there is one.

Usage: scripts/import-graph.py [src-dir] [--edges]   (from the repository root;
src-dir is src, the server library, by default, or bench/src)
"""
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "src"


def module_files():
    """Maps a module path ('hub::redis::live') to its file."""
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if not name.endswith(".rs") or name == "main.rs":
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            if rel[-1] in ("lib", "mod"):
                rel = rel[:-1]
            files["::".join(rel)] = path
    return files


def resolve(files, module, segments):
    """The file of the longest prefix of `segments` that is a module."""
    for n in range(len(segments), 0, -1):
        candidate = "::".join(segments[:n])
        if candidate in files:
            return files[candidate]
    return files.get(module)


def uses(text):
    """Paths named by `use` declarations and inline `crate::a::b` paths."""
    text = re.sub(r"//[^\n]*", "", text)
    # Leave out `#[cfg(test)] mod tests { ... }` blocks at the end of files.
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    if cut:
        text = text[: cut.start()]
    paths = []
    for m in re.finditer(r"\b(pub(?:\([a-z]+\))?\s+)?use\s+([^;]+);", text):
        tree = m.group(2).replace("\n", " ")
        paths.extend((path, bool(m.group(1))) for path in expand(tree))
    for m in re.finditer(r"\bcrate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)", text):
        paths.append(("crate::" + m.group(1), False))
    return paths


def expand(tree):
    """Expands `a::{b, c::{d}}` into `a::b`, `a::c::d`."""
    tree = tree.strip()
    m = re.match(r"^(.*?)::\{(.*)\}$", tree, re.S)
    if not m:
        return [tree.split(" as ")[0].strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, current = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    out = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if part == "self":
            out.append(prefix)
        else:
            out.extend(expand(prefix + "::" + part))
    return out


def graph():
    files = module_files()
    module_of = {path: module for module, path in files.items()}
    edges = {path: set() for path in files.values()}
    for module, path in files.items():
        text = open(path).read()
        here = module.split("::") if module else []
        for use, reexport in uses(text):
            segments = use.split("::")
            if segments[0] == "crate":
                target = segments[1:]
            elif segments[0] in ("self", "super"):
                # `self` is this file's module, each `super` one level up.
                target = here[:]
                while segments and segments[0] in ("self", "super"):
                    if segments[0] == "super":
                        target = target[:-1]
                    segments = segments[1:]
                target += segments
            elif "::".join(here + segments[:1]) in files:
                target = here + segments  # a child module, named relatively
            else:
                continue
            target = [s for s in target if s]
            if reexport and target[: len(here)] == here:
                continue  # a module's face: re-exporting its own children is not using them
            to = resolve(files, module, target)
            if to and to != path:
                edges[path].add(to)
    return edges, module_of


def sccs(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    edges, _ = graph()
    if "--edges" in sys.argv:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f"{a} -> {b}")
    circles = [sorted(c) for c in sccs(edges) if len(c) > 1]
    for c in circles:
        print(f"circle of {len(c)} files:")
        for f in c:
            inside = sorted(t for t in edges[f] if t in c)
            print(f"  {f} -> {', '.join(inside)}")
    if not circles:
        print(f"no circle among {len(edges)} files")
    return 1 if circles else 0


if __name__ == "__main__":
    sys.exit(main())
