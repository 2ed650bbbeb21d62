"""The test cluster's container images, built without Docker or a registry (scripts/testenv).

    python3 images.py build  --repo ROOT --cache DIR   build what is missing; print refs and archives (JSON)
    python3 images.py digest --repo ROOT --cache DIR   the runner/operator tag of this tree

Images (each an OCI archive for ``ctr images import``, tagged with a version, never latest):

* ``base``: Debian bookworm ``debootstrap --variant=minbase`` with python3, pip, git, tini,
  ca-certificates and openssh-client. Cached by its recipe; the slow part (network-bound).
* ``pause``: a static C pause process, the pod sandbox image.
* ``runner``: base + stepflow and its runtime dependencies: what steps run in.
* ``operator``: base + ``stepflow[operator]``, the user, directories, modes, entrypoint,
  command and environment of ``operator/Dockerfile``'s final stage (read from that file, so
  they cannot drift; e2e/test_cluster_images.py checks the result).

stepflow is installed offline, with pip inside the image's root (a chroot over an overlay
mount, so the new files are one small layer above the base) from wheels the host built
(the project's own) or downloaded (its dependencies, cached by pyproject.toml). The runner
and operator tags carry the digest of the sources that go into the wheel, so an edited tree
gets new images and a cluster never runs stale code under an old tag.
Standard library only: run with the system python3, as root (mount, chroot).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oci import DEFAULT_PATH, ImageConfig, tar_tree, tar_upper, write_archive  # noqa: E402

HERE = Path(__file__).resolve().parent
SUITE = "bookworm"
BASE_PACKAGES = ["python3", "python3-pip", "python3-venv", "git", "ca-certificates",
                 "openssh-client", "tini"]
#: Bump when the recipe changes in a way the inputs below do not show.
RECIPE = "2"
REGISTRY = "stepflow.test"
PAUSE_VERSION = "3.10"
PYTHON_TAG = {"python_version": "3.11", "abi": "cp311",
              "platforms": ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64",
                            "linux_x86_64"]}
#: What goes into the project's wheel (operator/.dockerignore's allow-list).
SOURCE_PATHS = ["pyproject.toml", "README.md", "LICENSE", "sdk", "operator"]
SOURCE_EXCLUDE = re.compile(r"(__pycache__|\.py[cod]$|\.egg-info|\.pytest_cache|\.hypothesis|"
                            r"\.stepflow|\.cache|\.venv|(^|/)Dockerfile$|(^|/)\.dockerignore$)")


def log(msg: str) -> None:
    print(f"testenv images: {msg}", file=sys.stderr, flush=True)


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:12]


def run(*argv: str | Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, **kw)


# ---- inputs ------------------------------------------------------------------------------
def source_files(repo: Path) -> list[Path]:
    out = []
    for top in SOURCE_PATHS:
        p = repo / top
        if p.is_file():
            out.append(p)
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if not SOURCE_EXCLUDE.search(d))
            for name in sorted(filenames):
                rel = os.path.relpath(os.path.join(dirpath, name), repo)
                if not SOURCE_EXCLUDE.search(rel):
                    out.append(repo / rel)
    return out


def source_digest(repo: Path) -> str:
    h = hashlib.sha256()
    for f in source_files(repo):
        h.update(str(f.relative_to(repo)).encode() + b"\0" + f.read_bytes() + b"\0")
    h.update((HERE / "images.py").read_bytes())
    return h.hexdigest()[:12]


def project_version(repo: Path) -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', (repo / "pyproject.toml").read_text(), re.M)
    if not m:
        raise SystemExit("no version in pyproject.toml")
    return m.group(1)


def debian_mirror() -> str:
    """The Debian mirror apt already uses (deb822 sources first), never the security one."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for line in deb822.read_text().splitlines():
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if "security" not in uri:
                        return uri
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            words = line.split()
            if words[:1] == ["deb"]:
                for w in words[1:]:
                    if "://" in w and "security" not in w:
                        return w
    return "http://deb.debian.org/debian"


def unmount_under(path: Path) -> None:
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f]
    for target in sorted((t for t in targets if t.startswith(str(path) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


# ---- base, pause -------------------------------------------------------------------------
def build_base(cache: Path) -> tuple[str, Path, Path]:
    """(ref, rootfs, layer tar) of the Debian base; debootstrap only when the recipe changed."""
    d = digest(RECIPE, SUITE, "minbase", *BASE_PACKAGES)
    home = cache / f"base-{SUITE}-{d}"
    ref = f"{REGISTRY}/base:{SUITE}-{d}"
    layer = home / "layer.tar"
    if (home / ".stamp").exists():
        return ref, home / "rootfs", layer
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".build-base-"))
    rootfs = tmp / "rootfs"
    mirror = debian_mirror()
    log(f"debootstrap {SUITE} from {mirror} ...")
    try:
        run("debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, rootfs, mirror,
            stdout=subprocess.DEVNULL)
    except BaseException:
        unmount_under(tmp)  # debootstrap mounts /proc and /sys in the root while it works
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    python = rootfs / "usr/local/bin/python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.symlink_to("/usr/bin/python3")  # the interpreter path of the python:3.11 images
    tar_tree(rootfs, tmp / "layer.tar")
    (tmp / ".stamp").write_text(d)
    shutil.rmtree(home, ignore_errors=True)
    os.replace(tmp, home)
    log(f"base {ref} built in {time.monotonic() - t0:.0f}s")
    return ref, home / "rootfs", layer


def build_pause(cache: Path) -> tuple[str, Path]:
    src = (HERE / "pause.c").read_bytes()
    d = digest(RECIPE, src)
    ref = f"{REGISTRY}/pause:{PAUSE_VERSION}-{d}"
    out = cache / f"pause-{d}.tar"
    if out.exists():
        return ref, out
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        run("gcc", "-static", "-Os", "-s", "-o", root / "pause", HERE / "pause.c")
        tar_tree(root, Path(tmp) / "layer.tar")
        write_archive(ref, [Path(tmp) / "layer.tar"], ImageConfig(entrypoint=["/pause"]), out)
    return ref, out


# ---- wheels ------------------------------------------------------------------------------
def tool_python(cache: Path) -> Path:
    """A venv of the host's python3 with pip: whatever python3 it is, pip is there."""
    venv = cache / "pip-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        run(sys.executable, "-m", "venv", venv)
    return py


def project_wheel(repo: Path, cache: Path, src: str) -> Path:
    """The project's wheel for this tree, built offline from the cached build requirements."""
    out = cache / f"wheel-{src}"
    found = sorted(out.glob("stepflow-*.whl"))
    if found:
        return found[0]
    build_reqs = dependency_wheels(repo, cache) / "build"
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tree = Path(tmp) / "src"
        for f in source_files(repo):
            dest = tree / f.relative_to(repo)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        dist = Path(tmp) / "dist"
        run(tool_python(cache), "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--no-index", "--find-links", build_reqs, "--wheel-dir", dist, tree,
            env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
        dist.rename(out)
    return sorted(out.glob("stepflow-*.whl"))[0]


def dependency_wheels(repo: Path, cache: Path) -> Path:
    """Binary wheels of stepflow[operator]'s dependencies for CPython 3.11 on x86_64 (the
    images' interpreter), and of the build requirements; downloaded once per pyproject.toml."""
    pyproject = (repo / "pyproject.toml").read_bytes()
    d = digest(RECIPE, pyproject, json.dumps(PYTHON_TAG))
    home = cache / f"wheels-{d}"
    if (home / ".stamp").exists():
        return home
    log("downloading dependency wheels (pip download, binary only) ...")
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".build-wheels-"))
    pip = [tool_python(cache), "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "download", "--quiet", "--only-binary=:all:", "--dest", tmp / "build", "setuptools>=68", "wheel")
    # Requirements as pyproject.toml names them: a throwaway project with the same dependencies.
    meta = tmp / "meta"
    meta.mkdir()
    (meta / "pyproject.toml").write_bytes(pyproject)
    (meta / "README.md").write_text("")
    (meta / "LICENSE").write_text("")  # pyproject.toml names it in license-files
    for pkg in ("sdk", "operator"):
        (meta / pkg).mkdir()
    run(*pip, "wheel", "--quiet", "--no-deps", "--no-index", "--find-links", tmp / "build",
        "--wheel-dir", tmp / "meta-dist", meta)
    meta_wheel = next((tmp / "meta-dist").glob("stepflow-*.whl"))
    platform_args = ["--python-version", PYTHON_TAG["python_version"], "--implementation", "cp",
                     "--abi", PYTHON_TAG["abi"], "--abi", "abi3", "--abi", "none"]
    for p in PYTHON_TAG["platforms"] + ["any"]:
        platform_args += ["--platform", p]
    run(*pip, "download", "--quiet", "--only-binary=:all:", *platform_args, "--dest", tmp / "deps",
        f"stepflow[operator] @ {meta_wheel.as_uri()}")
    for w in (tmp / "deps").glob("stepflow-*.whl"):
        w.unlink()  # the throwaway one; the real wheel is built per tree
    shutil.rmtree(meta)
    shutil.rmtree(tmp / "meta-dist")
    (tmp / ".stamp").write_text(d)
    shutil.rmtree(home, ignore_errors=True)
    os.replace(tmp, home)
    return home


# ---- stepflow images ---------------------------------------------------------------------
def dockerfile_final_stage(repo: Path) -> dict[str, list[str]]:
    """Instructions of operator/Dockerfile's last stage, continuation lines joined."""
    lines = [x for x in (repo / "operator/Dockerfile").read_text().splitlines() if not x.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    final = re.split(r"^FROM\s", joined, flags=re.M)[-1]
    found: dict[str, list[str]] = {}
    for line in final.splitlines()[1:]:
        keyword, _, rest = line.strip().partition(" ")
        if keyword:
            found.setdefault(keyword.upper(), []).append(rest.strip())
    return found


def _key_values(text: str) -> list[tuple[str, str]]:
    return [(k, v.strip('"')) for k, v in re.findall(r'([A-Za-z_][\w.]*)=("[^"]*"|\S+)', text)]


def operator_config(repo: Path) -> ImageConfig:
    """ENTRYPOINT, CMD, USER, ENV, EXPOSE and LABEL of operator/Dockerfile, as an image config."""
    stage = dockerfile_final_stage(repo)
    env = [DEFAULT_PATH] + [f"{k}={v}" for line in stage.get("ENV", []) for k, v in _key_values(line)]
    labels = dict(kv for line in stage.get("LABEL", []) for kv in _key_values(line))
    return ImageConfig(entrypoint=json.loads(stage["ENTRYPOINT"][-1]), cmd=json.loads(stage["CMD"][-1]),
                       user=stage["USER"][-1], env=env, labels=labels,
                       exposed_ports=[f"{p}/tcp" if "/" not in p else p for line in stage.get("EXPOSE", [])
                                      for p in line.split()])


#: Run in the image's root after the wheels are installed (operator/Dockerfile's RUN lines).
OPERATOR_SETUP = [
    ["groupadd", "--gid", "65532", "stepflow"],
    ["useradd", "--uid", "65532", "--gid", "65532", "--home-dir", "/nonexistent", "--no-create-home",
     "--shell", "/usr/sbin/nologin", "stepflow"],
    ["install", "-d", "-o", "65532", "-g", "65532", "-m", "0711", "/var/cache/stepflow"],
    ["kopf", "--version"],
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/local/bin/python", "-s", "-P",
     "-c", "import stepflow.compiler.build, stepflow.runtime, stepflow_operator.handlers"],
]
RUNNER_SETUP = [
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "/usr/local/bin/python", "-s", "-P",
     "-c", "import stepflow, stepflow.runtime"],
]


def install_layer(cache: Path, base_rootfs: Path, wheels: list[Path], requirement: str,
                  setup: list[list[str]], out: Path) -> None:
    """pip install ``requirement`` offline into the base under overlayfs; the upper dir,
    plus whatever ``setup`` changes, is the layer."""
    with tempfile.TemporaryDirectory(dir=cache, prefix=".layer-") as tmp:
        t = Path(tmp)
        upper, work, merged = t / "upper", t / "work", t / "merged"
        for p in (upper, work, merged):
            p.mkdir()
        run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={base_rootfs},upperdir={upper},workdir={work}", merged)
        try:
            stage = merged / "tmp" / "wheels"
            stage.mkdir()
            for source in wheels:
                for w in source.glob("*.whl"):
                    shutil.copy2(w, stage / w.name)
            env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                   "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1",
                   "PIP_ROOT_USER_ACTION": "ignore", "PIP_BREAK_SYSTEM_PACKAGES": "1"}
            run("chroot", merged, "/usr/bin/python3", "-m", "pip", "install", "--quiet", "--no-index",
                "--find-links", "/tmp/wheels", requirement, env=env)
            for argv in setup:
                run("chroot", merged, *argv, env=env, stdout=subprocess.DEVNULL)
            shutil.rmtree(stage)
        finally:
            run("umount", merged)
        shutil.rmtree(upper / "root" / ".cache", ignore_errors=True)
        tar_upper(upper, out)


def build_app_images(repo: Path, cache: Path, base_rootfs: Path, base_layer: Path) -> dict[str, dict]:
    src = source_digest(repo)
    version = project_version(repo)
    tag = f"{version}-{src}"
    wheel = project_wheel(repo, cache, src)
    deps = dependency_wheels(repo, cache)
    images = {}
    specs = {
        "runner": ("stepflow", RUNNER_SETUP,
                   ImageConfig(env=[DEFAULT_PATH, "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"],
                               labels={"org.opencontainers.image.title": "stepflow-runner"})),
        "operator": ("stepflow[operator]", OPERATOR_SETUP, operator_config(repo)),
    }
    for name, (requirement, setup, config) in specs.items():
        ref = f"{REGISTRY}/stepflow-{name}:{tag}"
        out = cache / f"stepflow-{name}-{tag}.tar"
        if not out.exists():
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(dir=cache, prefix=f".{name}-") as tmp:
                layer = Path(tmp) / "layer.tar"
                install_layer(cache, base_rootfs, [wheel.parent, deps / "deps"], requirement, setup, layer)
                write_archive(ref, [base_layer, layer], config, out)
            log(f"{ref} built in {time.monotonic() - t0:.0f}s")
        images[name] = {"ref": ref, "archive": str(out)}
    return images


def build_all(repo: Path, cache: Path) -> dict:
    """Every image for this tree (built when missing): name -> ref and archive."""
    cache.mkdir(parents=True, exist_ok=True)
    base_ref, rootfs, layer = build_base(cache)
    pause_ref, pause_tar = build_pause(cache)
    images = build_app_images(repo, cache, rootfs, layer)
    images["pause"] = {"ref": pause_ref, "archive": str(pause_tar)}
    images["base"] = {"ref": base_ref, "rootfs": str(rootfs)}
    return images


def prune(cache: Path, keep: dict, per_kind: int = 3) -> None:
    """Keep the newest few runner/operator archives: each is ~250 MB."""
    for kind in ("runner", "operator"):
        archives = sorted(cache.glob(f"stepflow-{kind}-*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in archives[per_kind:]:
            if str(old) != keep[kind]["archive"]:
                old.unlink()
    for old in sorted(cache.glob("wheel-*"), key=lambda p: p.stat().st_mtime, reverse=True)[10:]:
        shutil.rmtree(old, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "digest"])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "digest":
        print(f"{project_version(args.repo)}-{source_digest(args.repo)}")
        return
    images = build_all(args.repo, args.cache)
    prune(args.cache, images)
    print(json.dumps(images, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
