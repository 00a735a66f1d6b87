"""Fails when building the Python package alone would resolve different crate features than the
workspace's test build (and so compile DataFusion a second time in CI and for `pip install`).

maturin builds `-p datafusion-lifecycle` without the workspace's dev-dependencies; python/Cargo.toml
turns their features on explicitly, and its `workspace-build` feature (on in CI, off for `pip install`)
brings in the binary's library, whose features the workspace's build has. Run from the repository root: ``python python/tools/check_features.py``.
"""

import subprocess
import sys


def features(args):
    out = subprocess.run(["cargo", "tree", "-q", "--prefix", "none", "--format", "{p}|{f}", *args],
                         check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        if "|" not in line:
            continue
        package, feats = line.replace(" (*)", "").split("|", 1)
        package = package.split(" (/")[0].replace(" (proc-macro)", "")
        found[package] = {f for f in feats.split(",") if f}
    return found


workspace = features(["-e", "normal,build,dev", "--workspace"])
package = features(["-e", "normal,build", "-p", "datafusion-lifecycle", "--features", "datafusion-lifecycle/workspace-build"])
differences = [
    f"{p}: the workspace has {sorted(workspace[p] - package[p])}, the package alone {sorted(package[p] - workspace[p])}"
    for p in sorted(package)
    if p in workspace and workspace[p] != package[p] and not p.startswith("datafusion-lifecycle ")
]
if differences:
    print("python/Cargo.toml: align these features with the workspace (see its feature-alignment block):",
          *differences, sep="\n  ", file=sys.stderr)
    sys.exit(1)

# A crate that the workspace's test build compiles for build scripts only, but that the package
# takes as a normal dependency, is built once for both in the package's build (cargo merges the two)
# under another hash, and every build script that uses it, and every crate above those, compiles
# again. The Python package's own library is not part of the test build (`test = false`).
others = ["--workspace", "--exclude", "datafusion-lifecycle"]
workspace_normal = set(features(["-e", "normal,dev", *others]))
workspace_all = set(features(["-e", "normal,build,dev", *others]))
package_normal = set(features(["-e", "normal", "-p", "datafusion-lifecycle", "--features",
                               "datafusion-lifecycle/workspace-build"]))
build_only = sorted((package_normal - workspace_normal) & workspace_all)
if build_only:
    print("Cargo.toml: add these to the root's build-cache alignment dev-dependencies (a build-script "
          "dependency of the workspace that the Python package uses as a normal one):",
          *build_only, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"the Python package alone resolves the workspace's features ({len(package)} crates)")
