"""The source layout: tools/check-layout passes on the tree, and fails, naming
the file, for every kind of crossing it is there to catch (run on a copy of
the tree with one crossing added)."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "tools", "check-layout")


def run_check(root):
    return subprocess.run([sys.executable, CHECK, "--root", root], capture_output=True, text=True, timeout=60)


@pytest.fixture
def tree(tmp_path):
    """A copy of what the check reads: the sources, the Makefile and the docs."""
    root = tmp_path / "tree"
    root.mkdir()
    for d in ("common", "shm", "master", "child", "tools", "docs"):
        shutil.copytree(os.path.join(ROOT, d), root / d,
                        ignore=shutil.ignore_patterns("mock-upstream", "baseline", "body-cost"))
    shutil.copy(os.path.join(ROOT, "Makefile"), root / "Makefile")
    return root


def add_line(path, line, after):
    text = path.read_text()
    assert after in text, f"{path} no longer holds {after!r}"
    path.write_text(text.replace(after, after + line + "\n", 1))


def test_the_tree_follows_the_table():
    r = run_check(ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "follow the include table" in r.stdout


def test_a_copy_of_the_tree_passes(tree):
    r = run_check(str(tree))
    assert r.returncode == 0, r.stderr


CROSSINGS = [
    # (file, line put first in it, words the report must hold)
    ("child/core/queue.c", '#include "../master/settings.h"', "child/core/queue.c:"),
    ("master/listen.c", '#include "../child/child.h"', "master/listen.c:"),
    ("master/main.c", "#include <uv.h>", "master/main.c:"),
    ("common/log.c", '#include "../shm/region.h"', "common/log.c:"),
    ("common/log.c", '#include "../master/settings.h"', "common/log.c:"),
    ("common/json.c", "#include <h2o.h>", "common/json.c:"),
    ("common/options.c", "#include <curl/curl.h>", "common/options.c:"),
    ("shm/region.c", '#include "../child/core/queue.h"', "shm/region.c:"),
    ("child/entry.h", '#include "../common/options.h"', "child/entry.h:"),
    ("tools/mock_text.c", '#include "../common/json.h"', "tools/mock_text.c:"),
    ("child/core/buf.c", '#include "no_such_header.h"', "no file of the tree"),
    # the rooms of the worker
    ("child/core/queue.c", "#include <h2o.h>", "child/core/queue.c:"),
    ("child/core/request.c", '#include "../upstream/apns/apns_request.h"', "child/core/request.c:"),
    ("child/upstream/sender.c", '#include "../store/spool.h"', "child/upstream/sender.c:"),
    ("child/upstream/sender.c", '#include "../fleet/fleet.h"', "child/upstream/sender.c:"),
    ("child/upstream/sender.c", '#include "../http/http.h"', "child/upstream/sender.c:"),
    ("child/upstream/sender.c", '#include "fcm/v1.h"', "child/upstream/sender.c:"),
    ("child/upstream/fcm/v1.c", '#include "../apns/apns_request.h"', "child/upstream/fcm/v1.c:"),
    ("child/upstream/apns/apns.c", "#include <hiredis/hiredis.h>", "child/upstream/apns/apns.c:"),
    # upstream/ may include h2o's string functions, and no other header of h2o's
    ("child/upstream/jwt.c", "#include <h2o/memory.h>", "child/upstream/jwt.c:"),
    ("child/upstream/sender.c", "#include <h2o.h>", "child/upstream/sender.c:"),
    ("child/upstream/fcm/v1.c", "#include <h2o/string_.h>", "child/upstream/fcm/v1.c:"),
    ("child/store/spool.c", '#include "../fleet/fleet.h"', "child/store/spool.c:"),
    ("child/store/spool.c", "#include <curl/curl.h>", "child/store/spool.c:"),
    ("child/fleet/fleet_queue.c", '#include "../upstream/sender.h"', "child/fleet/fleet_queue.c:"),
    ("child/observe/metrics.c", '#include "../http/http.h"', "child/observe/metrics.c:"),
    ("child/http/http.c", '#include "../child.h"', "child/http/http.c:"),
    ("child/http/http.c", '#include "../upstream/apns/apns_request.h"', "child/http/http.c:"),
]


@pytest.mark.parametrize("path,line,words", CROSSINGS, ids=[f"{c[0]}:{c[1]}" for c in CROSSINGS])
def test_an_include_across_the_lines_fails(tree, path, line, words):
    f = tree / path
    f.write_text(line + "\n" + f.read_text())
    r = run_check(str(tree))
    assert r.returncode == 1
    assert words in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_the_mock_linked_with_a_product_object_fails(tree):
    mk = tree / "Makefile"
    line = next(l for l in mk.read_text().splitlines(keepends=True) if l.startswith("MOCK_OBJ = "))
    add_line(mk, "MOCK_OBJ += $(BUILD)/common/json.o", line)
    r = run_check(str(tree))
    assert r.returncode == 1
    assert "the mock upstream is built from common/json.c" in r.stderr, r.stderr


def test_the_mock_linked_with_the_product_library_fails(tree):
    mk = tree / "Makefile"
    text = mk.read_text()
    old = "$(MOCK): $(MOCK_OBJ)\n"
    assert old in text
    mk.write_text(text.replace(old, "$(MOCK): $(MOCK_OBJ) $(LIB_OBJ)\n", 1))
    r = run_check(str(tree))
    assert r.returncode == 1
    assert "the mock upstream is built from child/upstream/sender.c" in r.stderr, r.stderr


def test_a_table_in_the_docs_that_differs_fails(tree):
    doc = tree / "docs" / "ARCHITECTURE.md"
    text = doc.read_text()
    row = "| `child/` | the worker's life"
    assert row in text
    doc.write_text(text.replace("`child/`, `common/`, `shm/` | — |", "`child/`, `common/`, `shm/`, `master/` | — |", 1))
    r = run_check(str(tree))
    assert r.returncode == 1
    assert "docs/ARCHITECTURE.md does not hold the include table" in r.stderr, r.stderr


def test_a_file_in_no_room_list_fails(tree):
    (tree / "child" / "core" / "stray.c").write_text("/* child/core/stray.c - in no list */\n")
    r = run_check(str(tree))
    assert r.returncode == 1
    assert r.stderr == "child/core/stray.c is in no room's list in docs/ARCHITECTURE.md\n", r.stderr


def test_a_page_in_no_room_list_fails(tree):
    """A page the build embeds is a source of its room like a .c file."""
    (tree / "child" / "http" / "other.html").write_text("<!doctype html>\n")
    r = run_check(str(tree))
    assert r.returncode == 1
    assert r.stderr == "child/http/other.html is in no room's list in docs/ARCHITECTURE.md\n", r.stderr


def test_a_listed_file_the_tree_lacks_fails(tree):
    (tree / "child" / "observe" / "graphite.h").unlink()
    r = run_check(str(tree))
    assert r.returncode == 1
    # graphite.c still includes it, and the list names it
    assert "docs/ARCHITECTURE.md lists child/observe/graphite.h, which the tree does not have" in r.stderr, r.stderr


def test_a_folder_that_is_no_room_fails(tree):
    (tree / "child" / "extra").mkdir()
    (tree / "child" / "extra" / "x.h").write_text("/* child/extra/x.h */\n")
    r = run_check(str(tree))
    assert r.returncode == 1
    assert r.stderr == "child/extra/ holds sources but is no room of docs/ARCHITECTURE.md\n", r.stderr


def test_a_room_listed_twice_fails(tree):
    doc = tree / "docs" / "ARCHITECTURE.md"
    text = doc.read_text()
    row = next(l for l in text.splitlines(keepends=True) if l.startswith("| `child/store/` |"))
    doc.write_text(text.replace(row, row + row, 1))
    r = run_check(str(tree))
    assert r.returncode == 1
    assert "the room child/store/ has two rows" in r.stderr, r.stderr
