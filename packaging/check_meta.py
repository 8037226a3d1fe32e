#!/usr/bin/env python3
"""Validates a PGXN META.json against the PGXN Meta Spec 1.0.0 (https://pgxn.org/spec/):
    python3 packaging/check_meta.py META.json VERSION
VERSION is the release's version (Cargo.toml's, the package's): the distribution's version and
provides.pg_conversation.version must be it. Checks the required keys and the form of every key
the spec defines; provides' files must exist beside META.json. Prints each problem and exits 1 if
there is one. Standard library only."""
import json
import os
import re
import sys

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")
# A version range: "0", a version, or comma-separated "OP version" conditions.
CONDITION = re.compile(r"^(?:(?:>=|<=|==|!=|>|<)\s*)?(\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z-]+)?)$")
LICENSES = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd",
            "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
            "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay",
            "sun", "zlib", "open_source", "restricted", "unrestricted", "unknown"}
KEYS = {"name", "abstract", "description", "version", "maintainer", "license", "provides",
        "prereqs", "resources", "release_status", "tags", "no_index", "meta-spec", "generated_by"}
REQUIRED = ["name", "abstract", "maintainer", "license", "provides", "version", "meta-spec"]


def check(meta, version, root):
    problems = []
    add = problems.append
    for key in REQUIRED:
        if key not in meta:
            add(f"required key {key!r} is missing")
    for key in meta:
        if key not in KEYS and not key.lower().startswith("x_"):
            add(f"unknown key {key!r} (custom keys start with x_)")
    if meta.get("meta-spec", {}).get("version") != "1.0.0":
        add("meta-spec.version is not 1.0.0")
    name = meta.get("name")
    if not isinstance(name, str) or len(name) < 2 or re.search(r"[/\\:\s]", name):
        add(f"name {name!r}: two or more characters, none of / \\ : or space")
    for key in ("abstract", "description", "generated_by"):
        if key in meta and not (isinstance(meta[key], str) and meta[key].strip()):
            add(f"{key} is not a non-empty string")
    if not (isinstance(meta.get("version"), str) and SEMVER.match(meta["version"])):
        add(f"version {meta.get('version')!r} is not a semantic version")
    elif meta["version"] != version:
        add(f"version {meta['version']} is not the release's {version}")
    maintainer = meta.get("maintainer")
    if isinstance(maintainer, str):
        maintainer = [maintainer]
    if not (isinstance(maintainer, list) and maintainer and all(isinstance(m, str) and m.strip() for m in maintainer)):
        add("maintainer is not a string or a non-empty list of strings")
    license = meta.get("license")
    if isinstance(license, str):
        if license not in LICENSES:
            add(f"license {license!r} is not one the spec names")
    elif not (isinstance(license, (list, dict)) and license):
        add("license is not a string, a list or an object")

    provides = meta.get("provides")
    if not (isinstance(provides, dict) and provides):
        add("provides is not a non-empty object")
        provides = {}
    for extension, entry in provides.items():
        if not isinstance(entry, dict):
            add(f"provides.{extension} is not an object")
            continue
        if not (isinstance(entry.get("version"), str) and SEMVER.match(entry["version"])):
            add(f"provides.{extension}.version is not a semantic version")
        for key in ("file", "docfile"):
            if key in entry and not os.path.isfile(os.path.join(root, str(entry[key]))):
                add(f"provides.{extension}.{key}: no file {entry[key]!r}")
        if "file" not in entry:
            add(f"provides.{extension}.file is missing")
    main = provides.get(name, {})
    if main.get("version") != version:
        add(f"provides.{name}.version {main.get('version')!r} is not the release's {version}")

    prereqs = meta.get("prereqs", {})
    for phase, relations in prereqs.items():
        if phase not in ("configure", "build", "test", "runtime", "develop"):
            add(f"prereqs: unknown phase {phase!r}")
            continue
        for relation, requirements in relations.items():
            if relation not in ("requires", "recommends", "suggests", "conflicts"):
                add(f"prereqs.{phase}: unknown relation {relation!r}")
                continue
            for prereq, condition in requirements.items():
                parts = [part.strip() for part in str(condition).split(",")]
                if not all(CONDITION.match(part) for part in parts):
                    add(f"prereqs.{phase}.{relation}.{prereq}: {condition!r} is not a version range")
    if "PostgreSQL" not in prereqs.get("runtime", {}).get("requires", {}):
        add("prereqs.runtime.requires has no PostgreSQL")

    resources = meta.get("resources", {})
    url = re.compile(r"^https?://[^\s/]+\S*$")
    if not isinstance(resources, dict):
        add("resources is not an object")
        resources = {}
    for key, value in resources.items():
        if key == "homepage":
            ok = isinstance(value, str) and url.match(value)
        elif key == "bugtracker":
            ok = isinstance(value, dict) and value and all(k in ("web", "mailto") for k in value) and \
                ("web" not in value or url.match(value["web"]))
        elif key == "repository":
            ok = isinstance(value, dict) and value and all(k in ("url", "web", "type") for k in value) and \
                ("web" not in value or url.match(value["web"]))
        else:
            ok = key.lower().startswith("x_")
        if not ok:
            add(f"resources.{key} is not what the spec allows")
    if meta.get("release_status", "stable") not in ("stable", "testing", "unstable"):
        add("release_status is not stable, testing or unstable")
    tags = meta.get("tags", [])
    if not (isinstance(tags, list) and all(isinstance(t, str) and 0 < len(t) < 256 for t in tags)):
        add("tags is not a list of strings shorter than 256 characters")
    return problems


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} META.json VERSION")
    path, version = sys.argv[1:]
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    problems = check(meta, version, os.path.dirname(os.path.abspath(path)))
    for problem in problems:
        print(f"{path}: {problem}")
    if problems:
        sys.exit(1)
    print(f"{path}: PGXN Meta Spec 1.0.0, {meta['name']} {meta['version']}")


if __name__ == "__main__":
    main()
