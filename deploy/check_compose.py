"""Checks docker-compose.yml without a Docker engine (run by scripts/check-compose.sh).

1. Schema: the file (and the override examples in deploy/) against the Compose Specification JSON
   schema shipped by the check-jsonschema package.
2. Consistency with the repository:
   - every image is built by the Dockerfile or is a pinned image of an official publisher;
   - every service running our image runs a binary the Dockerfile installs (and `cargo build`s)
     and has a health check of its own unless it runs the api (the Dockerfile's HEALTHCHECK);
   - every variable common/src/config/ requires (`required("…")`) is set for `api` and `worker`,
     every variable the ML stand-in requires is set for it, and the ML key matches both sides;
   - hosts in URLs and host:port values are services of the file, on the ports those services
     listen on; listen ports match the binaries' defaults or their PORT/STANDIN_LISTEN/METRICS_ADDR,
     the health checks, `expose`, the Dockerfile's EXPOSE and the proxy's upstream;
   - every bind-mounted file exists, every named volume is declared (and every declared one used),
     Temporal's dynamic config is mounted where DYNAMIC_CONFIG_FILE_PATH points;
   - depends_on names services that exist; `service_healthy` targets have a health check,
     `service_completed_successfully` targets are one-shot (`restart: "no"`);
   - replicated services have no container_name and no fixed host port;
   - temporal/search-attributes.txt lists exactly the search attributes of common/src/workflow.rs.
3. Self-test: deliberately broken copies of the file, written to a temporary directory, must each
   be rejected with the expected message; otherwise the check itself is broken.

Exit status 0 when everything holds, 1 otherwise, with one line per problem.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import re
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import check_jsonschema
import jsonschema
from ruamel.yaml import YAML

OWN_IMAGE_BINARY_DIR = "/usr/local/bin"
# Publishers whose images may be used when pinned to a version tag (Docker official images have
# no namespace).
OFFICIAL_PUBLISHERS = {"library", "temporalio", "minio"}
BACKENDS = ("api", "worker")


def load_yaml(text: str):
    yaml = YAML(typ="safe", pure=True)
    return yaml.load(text)


def dump_yaml(doc) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def compose_schema():
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------
# What the repository says


class Repo:
    def __init__(self, root: Path):
        self.root = root
        self.dockerfile = self._dockerfile(root / "Dockerfile")
        self.cargo_bins = self._cargo_bins(root)
        self.required = self._required_vars(root / "common" / "src" / "config")
        self.api_default_port = self._api_default_port(root / "common" / "src" / "config")
        self.standin_required, self.standin_default_port = self._standin(root / "standin" / "src" / "config.rs")
        self.search_attributes = self._search_attributes(root / "common" / "src" / "workflow.rs")
        self.search_attributes_file = self._search_attributes_txt(root / "temporal" / "search-attributes.txt")

    @staticmethod
    def _dockerfile(path: Path) -> dict:
        text = path.read_text()
        # Join continuation lines, drop comments.
        logical = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
        stages = re.split(r"(?im)^FROM\s+", logical)[1:]
        if not stages:
            raise SystemExit(f"{path}: no FROM instruction")
        final = stages[-1]
        installed = set()
        for m in re.finditer(r"(?im)^COPY\s+(.*)$", final):
            parts = [p for p in m.group(1).split() if not p.startswith("--")]
            if len(parts) >= 2 and parts[-1].rstrip("/") == OWN_IMAGE_BINARY_DIR:
                installed.update(Path(p).name for p in parts[:-1])
        built = set(re.findall(r"--bin\s+([\w-]+)", logical))
        expose = {int(p.split("/")[0]) for m in re.finditer(r"(?im)^EXPOSE\s+(.*)$", final) for p in m.group(1).split()}
        cmd = re.search(r"(?im)^CMD\s+(\[.*\])\s*$", final)
        healthcheck = re.search(r"(?im)^HEALTHCHECK\s+(.*)$", final)
        return {
            "installed": installed,
            "built": built,
            "expose": expose,
            "cmd": json.loads(cmd.group(1)) if cmd else None,
            "healthcheck": healthcheck.group(1) if healthcheck else None,
        }

    @staticmethod
    def _cargo_bins(root: Path) -> set[str]:
        bins = set()
        for toml in root.glob("*/Cargo.toml"):
            bins.update(re.findall(r'\[\[bin\]\]\s*\nname\s*=\s*"([^"]+)"', toml.read_text()))
        return bins

    @staticmethod
    def _rust_sources(path: Path) -> str:
        """The code (tests left out) of a source file, or of every file of a module directory."""
        files = sorted(path.glob("*.rs")) if path.is_dir() else [path]
        return "\n".join(f.read_text().split("#[cfg(test)]")[0] for f in files)

    @staticmethod
    def _required_vars(path: Path) -> dict[str, set[str]]:
        """`required("VAR"` calls per config type: {"common": …, "api": …, "worker": …}."""
        text = Repo._rust_sources(path)
        marks = sorted(
            (m.start(), m.group(1)) for m in re.finditer(r"(?m)^impl (CommonConfig|ApiConfig|WorkerConfig)\b", text)
        )
        names = {"CommonConfig": "common", "ApiConfig": "api", "WorkerConfig": "worker"}
        found: dict[str, set[str]] = {"common": set(), "api": set(), "worker": set()}
        for i, (start, ty) in enumerate(marks):
            end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
            found[names[ty]].update(re.findall(r'\brequired\(\s*"([A-Z0-9_]+)"', text[start:end]))
        for must in ("DATABASE_URL", "REDIS_URL", "SERVER_URL", "SERVER_API_KEY"):
            if must not in found["common"]:
                raise SystemExit(f"{path}: no required(\"{must}\") found in impl CommonConfig; update deploy/check_compose.py")
        if "JWT_SECRET" not in found["api"]:
            raise SystemExit(f"{path}: no required(\"JWT_SECRET\") found in impl ApiConfig; update deploy/check_compose.py")
        return found

    @staticmethod
    def _api_default_port(path: Path) -> int:
        m = re.search(r'parse\(\s*"PORT"\s*,\s*(\d+)u16', Repo._rust_sources(path))
        if not m:
            raise SystemExit(f"{path}: the default of PORT was not found; update deploy/check_compose.py")
        return int(m.group(1))

    @staticmethod
    def _standin(path: Path) -> tuple[set[str], int]:
        text = path.read_text()
        usage = re.search(r'USAGE: &str = "(.*?)";', text, re.S)
        if not usage:
            raise SystemExit(f"{path}: USAGE not found; update deploy/check_compose.py")
        required = set(re.findall(r"^\s*--[\w-]+ <[^>]+>\s+([A-Z0-9_]+)\s+.*\(required\)", usage.group(1), re.M))
        listen = re.search(r"STANDIN_LISTEN\s+.*\(default [\d.]+:(\d+)\)", usage.group(1))
        if not required or not listen:
            raise SystemExit(f"{path}: required flags or the default listen port not found in USAGE")
        return required, int(listen.group(1))

    @staticmethod
    def _search_attributes(path: Path) -> dict[str, str]:
        kinds = {"keyword": "Keyword", "int": "Int", "text": "Text", "bool": "Bool", "double": "Double",
                 "datetime": "Datetime", "keyword_list": "KeywordList"}
        return {name: kinds[kind] for kind, name in re.findall(r'SearchAttributeKey::(\w+)\("(\w+)"\)', path.read_text())}

    @staticmethod
    def _search_attributes_txt(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                name, kind = line.split()[:2]
                out[name] = kind
        return out


# ---------------------------------------------------------------------------------------------
# Reading the compose file


INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str) -> str:
    """Resolves `${VAR:-default}` to its default and `${VAR:?msg}` to a placeholder (set at run time)."""
    def repl(m: re.Match) -> str:
        op, arg = m.group(2), m.group(3)
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"<{m.group(1)}>"
        return ""
    return INTERP.sub(repl, value.replace("$$", "\0")).replace("\0", "$")


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_of(service: dict):
    cmd = service.get("command")
    if isinstance(cmd, str):
        cmd = cmd.split()
    return cmd


def healthcheck_text(service: dict) -> str | None:
    hc = service.get("healthcheck")
    if not hc or hc.get("disable"):
        return None
    test = hc.get("test")
    return " ".join(test) if isinstance(test, list) else test


def mounts_of(service: dict):
    """(source, target, type) of each volume entry, short or long syntax."""
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            if len(parts) == 1:
                yield None, parts[0], "volume"
                continue
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            yield source, target, kind
        else:
            yield v.get("source"), v.get("target"), v.get("type", "volume")


def host_ports(service: dict):
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            if p.get("published"):
                yield str(p.get("published")), int(p["target"])
        else:
            parts = str(p).split(":")
            if len(parts) >= 2:
                yield parts[-2], int(parts[-1].split("/")[0])


def endpoints(value: str):
    """(host, port) pairs named in a URL or host:port value."""
    value = value.strip()
    if "://" in value:
        for part in value.split(","):
            u = urlsplit(part.strip())
            if u.hostname:
                default = {"http": 80, "https": 443, "postgres": 5432, "postgresql": 5432, "redis": 6379}.get(u.scheme)
                yield u.hostname, u.port or default
    else:
        m = re.fullmatch(r"([A-Za-z0-9.-]+):(\d+)", value)
        if m:
            yield m.group(1), int(m.group(2))


def port_in(text: str | None) -> int | None:
    if not text:
        return None
    m = re.search(r"(?:127\.0\.0\.1|localhost|0\.0\.0\.0):(\d+)", text)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------------------------------------
# The checks


class Report:
    def __init__(self, label: str):
        self.label = label
        self.problems: list[str] = []
        self.checked: list[str] = []
        self.failed: set[str] = set()

    @property
    def passed(self) -> list[str]:
        return [w for w in self.checked if w not in self.failed]

    def check(self, ok: bool, what: str, problem: str):
        if what not in self.checked:
            self.checked.append(what)
        if not ok:
            self.failed.add(what)
            self.problems.append(problem)


def check_schema(doc, label: str, schema, report: Report):
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    paths = [tuple(e.absolute_path) for e in errors]
    for e in errors:
        here = tuple(e.absolute_path)
        # A parent's "unevaluated properties" error only echoes a deeper one.
        if any(len(p) > len(here) and p[: len(here)] == here for p in paths):
            continue
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        report.problems.append(f"{label}: schema: {where}: {e.message}")
    report.checked.append(f"{label} is valid against the Compose Specification schema")
    if errors:
        report.failed.add(report.checked[-1])


def check_compose(doc: dict, repo: Repo, report: Report):
    services: dict = doc.get("services") or {}
    df = repo.dockerfile
    own_image_names = set()

    # Listen ports of the services, for the endpoint checks.
    listen: dict[str, set[int]] = {}

    for name, svc in services.items():
        image = svc.get("image", "")
        build = svc.get("build")
        if build is not None:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            report.check(
                Path(ctx) == Path(".") and dockerfile == "Dockerfile",
                "every built service builds the repository's Dockerfile",
                f"service {name}: builds {ctx}/{dockerfile}, not ./Dockerfile",
            )
            own_image_names.add(image)
        else:
            ref = image.split("@")[0]
            repo_part, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "")
            publisher = repo_part.split("/")[0] if "/" in repo_part else "library"
            report.check(
                bool(image) and publisher in OFFICIAL_PUBLISHERS and ("@sha256:" in image or (tag and tag != "latest")),
                "every other image is a pinned official image",
                f"service {name}: image {image!r} is neither built by the Dockerfile nor a pinned official image "
                f"(publisher one of {sorted(OFFICIAL_PUBLISHERS)}, tag other than latest)",
            )

    report.check(len(own_image_names) <= 1, "services built from the Dockerfile share one image name",
                 f"services built from the Dockerfile use several image names: {sorted(own_image_names)}")

    # Binaries of our image.
    for binary in df["installed"]:
        report.check(binary in repo.cargo_bins and binary in df["built"],
                     "the Dockerfile builds every binary it installs",
                     f"Dockerfile: installs {binary} but does not `cargo build --bin {binary}` it, or no crate has that [[bin]]")
    for port in (repo.api_default_port, repo.standin_default_port):
        report.check(port in df["expose"], "the Dockerfile EXPOSEs the api's and the stand-in's default ports",
                     f"Dockerfile: EXPOSE lacks {port}")

    runs: dict[str, str] = {}
    for name, svc in services.items():
        if svc.get("build") is None:
            continue
        cmd = command_of(svc) or df["cmd"]
        binary = cmd[0] if cmd else None
        runs[name] = binary
        report.check(binary in df["installed"], "every command names a binary the Dockerfile installs",
                     f"service {name}: command {cmd!r} runs {binary!r}, which the Dockerfile does not install in "
                     f"{OWN_IMAGE_BINARY_DIR} (installed: {sorted(df['installed'])})")
        report.check(healthcheck_text(svc) is not None or binary == "api",
                     "services of our image other than the api define their own health check",
                     f"service {name}: runs {binary} but has no healthcheck (the image's HEALTHCHECK probes the api)")

    for need in BACKENDS:
        report.check(need in runs.values(), "the api and the worker are services",
                     f"no service runs the {need} binary")

    # Required variables and listen ports.
    for name, binary in runs.items():
        env = {k: interpolate(v) for k, v in env_of(services[name]).items()}
        if binary in BACKENDS:
            required = repo.required["common"] | repo.required[binary]
            raw_env = env_of(services[name])
            for var in sorted(required):
                hint = ""
                if var in raw_env and not env.get(var, "").strip():
                    hint = f"; {raw_env[var]!r} is empty unless set at run time (use ${{{var}:?message}} or a default)"
                report.check(bool(env.get(var, "").strip()),
                             "every variable config.rs requires is set for the api and the worker",
                             f"service {name}: required variable {var} is not set (common/src/config/){hint}")
        if binary == "ml-standin":
            for var in sorted(repo.standin_required):
                report.check(bool(env.get(var, "").strip()), "every variable the ML stand-in requires is set",
                             f"service {name}: required variable {var} is not set (standin/src/config.rs)")
        if binary == "api":
            port = int(env.get("PORT") or repo.api_default_port)
        elif binary == "ml-standin":
            port = int((env.get("STANDIN_LISTEN") or f":{repo.standin_default_port}").rsplit(":", 1)[1])
        else:
            port = int(env["METRICS_ADDR"].rsplit(":", 1)[1]) if env.get("METRICS_ADDR") else None
        if port is not None:
            listen[name] = {port}
            hc_port = port_in(healthcheck_text(services[name]))
            if healthcheck_text(services[name]) is not None:
                report.check(hc_port == port, "health checks probe the port each binary listens on",
                             f"service {name}: healthcheck probes port {hc_port}, but {binary} listens on {port}")
            exposed = {int(str(e).split("/")[0]) for e in services[name].get("expose") or []}
            report.check(not exposed or port in exposed, "`expose` lists the port each binary listens on",
                         f"service {name}: expose {sorted(exposed)} does not include {port}")
        elif binary == "worker":
            report.check(False, "the worker serves /metrics for its health check",
                         f"service {name}: METRICS_ADDR is not set, so the worker serves nothing to health-check")

    # Known ports of the other images.
    for name, svc in services.items():
        image = svc.get("image", "")
        known = {"postgres": 5432, "redis": 6379, "temporalio/auto-setup": 7233, "minio/minio": 9000}
        for prefix, port in known.items():
            if image.split(":")[0] == prefix:
                listen[name] = {port}

    # Endpoints in the environment must be services of the file, on their ports.
    for name, binary in runs.items():
        for var, raw in env_of(services[name]).items():
            for host, port in endpoints(interpolate(raw)):
                if host in ("localhost", "127.0.0.1", "0.0.0.0") or "." in host:
                    continue
                report.check(host in services, "hosts named in the environment are services of the file",
                             f"service {name}: {var} names host {host!r}, which is not a service")
                if host in services and host in listen and port is not None:
                    report.check(port in listen[host], "ports named in the environment are the ports those services listen on",
                                 f"service {name}: {var} uses {host}:{port}, but {host} listens on {sorted(listen[host])}")

    # The ML key of both sides.
    standins = [n for n, b in runs.items() if b == "ml-standin"]
    for name, binary in runs.items():
        if binary not in BACKENDS:
            continue
        env = env_of(services[name])
        for s in standins:
            if any(h == s for h, _ in endpoints(interpolate(env.get("SERVER_URL", "")))):
                report.check(interpolate(env.get("SERVER_API_KEY", "")) == interpolate(env_of(services[s]).get("API_KEY", "")),
                             "the api and the worker send the key the stand-in expects",
                             f"service {name}: SERVER_API_KEY differs from {s}'s API_KEY")

    # Mounts and volumes.
    declared = set((doc.get("volumes") or {}).keys())
    used = set()
    for name, svc in services.items():
        for source, target, kind in mounts_of(svc):
            if kind == "bind":
                path = (repo.root / source).resolve() if not source.startswith("/") else Path(source)
                report.check(path.exists(), "every mounted file exists in the repository",
                             f"service {name}: mounts {source}, which does not exist")
            elif kind == "volume" and source:
                used.add(source)
                report.check(source in declared, "every named volume is declared",
                             f"service {name}: named volume {source!r} is not declared under top-level volumes")
    for v in sorted(declared - used):
        report.check(False, "every declared volume is used", f"volume {v!r} is declared but no service mounts it")

    # Temporal's dynamic config.
    for name, svc in services.items():
        path = env_of(svc).get("DYNAMIC_CONFIG_FILE_PATH")
        if path:
            target = path if path.startswith("/") else f"/etc/temporal/{path}"
            report.check(any(t == target for _, t, k in mounts_of(svc) if k == "bind"),
                         "Temporal's dynamic config is mounted where DYNAMIC_CONFIG_FILE_PATH points",
                         f"service {name}: DYNAMIC_CONFIG_FILE_PATH {path} ({target}) is not a bind mount of the service")

    # depends_on.
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, how in deps.items():
            report.check(dep in services, "depends_on names services of the file",
                         f"service {name}: depends_on {dep!r}, which is not a service")
            if dep not in services:
                continue
            cond = (how or {}).get("condition")
            target = services[dep]
            if cond == "service_healthy":
                has_hc = healthcheck_text(target) is not None or (target.get("build") is not None and df["healthcheck"])
                report.check(bool(has_hc), "`service_healthy` dependencies have a health check",
                             f"service {name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
            if cond == "service_completed_successfully":
                report.check(str(target.get("restart", "no")) == "no", "`service_completed_successfully` dependencies are one-shot",
                             f"service {name}: waits for {dep} to complete, but {dep} restarts ({target.get('restart')})")

    # Long-running services have health checks.
    one_shots = {dep for svc in services.values() for dep, how in
                 ((svc.get("depends_on") or {}).items() if isinstance(svc.get("depends_on"), dict) else [])
                 if (how or {}).get("condition") == "service_completed_successfully"}
    for name, svc in services.items():
        if name in one_shots:
            continue
        has_hc = healthcheck_text(svc) is not None or (svc.get("build") is not None and runs.get(name) == "api")
        report.check(has_hc, "every long-running service has a health check", f"service {name}: no healthcheck")

    # Replicas.
    for name, svc in services.items():
        replicas = (svc.get("deploy") or {}).get("replicas")
        if isinstance(replicas, int) and replicas > 1:
            report.check("container_name" not in svc, "replicated services have no container_name",
                         f"service {name}: {replicas} replicas cannot share container_name")
            fixed = [p for p, _ in host_ports(svc) if p and "-" not in p]
            report.check(not fixed, "replicated services publish no fixed host port",
                         f"service {name}: {replicas} replicas cannot all publish host port(s) {fixed}")
    for b in BACKENDS:
        for name, binary in runs.items():
            # An inference worker serves one ML server with that server's capacity: exactly one.
            if (services[name].get("environment") or {}).get("WORKER_ROLE") == "inference":
                replicas = (services[name].get("deploy") or {}).get("replicas", 1)
                report.check(replicas == 1, "one inference worker per ML server",
                             f"service {name}: an inference worker runs {replicas} replicas; its ML server would get {replicas}× its capacity")
                continue
            if binary == b:
                replicas = (services[name].get("deploy") or {}).get("replicas", 1)
                report.check(isinstance(replicas, int) and replicas >= 2, "the api and the worker run replicated",
                             f"service {name}: deploy.replicas is {replicas}, expected at least 2")

    # The proxy in front of the api.
    api_services = [n for n, b in runs.items() if b == "api"]
    for name, svc in services.items():
        for source, target, kind in mounts_of(svc):
            if kind == "bind" and target.startswith("/etc/nginx/") and (repo.root / source).is_file():
                conf = (repo.root / source).read_text()
                for api in api_services:
                    for port in listen.get(api, set()):
                        report.check(re.search(rf"\bserver\s+{re.escape(api)}:{port}\b", conf) is not None,
                                     "the proxy forwards to the api's port",
                                     f"service {name}: {source} has no `server {api}:{port}` upstream")
                report.check("/socket.io" in conf and re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade", conf) is not None,
                             "the proxy upgrades Socket.IO connections to WebSocket",
                             f"service {name}: {source} does not forward the Upgrade header for /socket.io")
                published = [t for _, t in host_ports(svc)]
                report.check(bool(published), "the proxy publishes a host port",
                             f"service {name}: the proxy publishes no host port")

    # Search attributes: the file the set-up job registers equals the code's keys.
    report.check(repo.search_attributes == repo.search_attributes_file,
                 "temporal/search-attributes.txt matches the search attributes of common/src/workflow.rs",
                 f"temporal/search-attributes.txt {repo.search_attributes_file} differs from common/src/workflow.rs "
                 f"{repo.search_attributes}")
    registers = any(
        any(k == "bind" and Path(s).resolve() == (repo.root / "temporal").resolve() for s, _, k in mounts_of(svc))
        and "register-search-attributes.sh" in " ".join(str(x) for x in (svc.get("entrypoint") or []) + (command_of(svc) or []))
        for svc in services.values()
    )
    report.check(registers, "a one-shot service registers the search attributes with temporal/register-search-attributes.sh",
                 "no service mounts ./temporal and runs register-search-attributes.sh")


def check_dockerignore(repo: Repo, report: Report):
    """The build context keeps the sources and .sqlx/, and leaves out build output and local state."""
    import fnmatch

    path = repo.root / ".dockerignore"
    patterns = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")] if path.exists() else []

    def ignored(name: str) -> bool:
        hit = False
        for p in patterns:
            neg = p.startswith("!")
            pat = p.lstrip("!").strip("/")
            for candidate in (pat, pat.removeprefix("**/")):
                if fnmatch.fnmatch(name, candidate):
                    hit = not neg
        return hit

    for name in ("target", ".venv", ".data", "node_modules", ".git", ".env"):
        report.check(ignored(name), ".dockerignore leaves out build output, local state and secrets",
                     f".dockerignore: {name} is not excluded from the build context")
    members = re.findall(r'"([\w-]+)"', re.search(r"members\s*=\s*\[(.*?)\]", (repo.root / "Cargo.toml").read_text(), re.S).group(1))
    for name in ["Cargo.toml", "Cargo.lock", ".sqlx", "migrations", *members]:
        report.check(not ignored(name), ".dockerignore keeps what the build needs (sources, Cargo.lock, .sqlx/, migrations/)",
                     f".dockerignore: {name} is excluded, but the Docker build needs it")


def run_checks(path: Path, repo: Repo, schema, *, consistency: bool = True) -> Report:
    report = Report(str(path))
    try:
        doc = load_yaml(path.read_text())
    except Exception as e:  # noqa: BLE001 - any parse error is a finding
        report.problems.append(f"{path}: not valid YAML: {e}")
        return report
    check_schema(doc, path.name, schema, report)
    if consistency:
        check_compose(doc, repo, report)
    return report


# ---------------------------------------------------------------------------------------------
# Self-test: broken copies must be rejected


def broken_copies(doc: dict):
    """(description, mutated document, expected substring of a problem)."""
    def mutate(fn):
        d = copy.deepcopy(doc)
        fn(d)
        return d

    yield ("api without JWT_SECRET",
           mutate(lambda d: d["services"]["api"]["environment"].pop("JWT_SECRET")),
           "service api: required variable JWT_SECRET is not set")
    yield ("worker without DATABASE_URL",
           mutate(lambda d: d["services"]["worker"]["environment"].pop("DATABASE_URL")),
           "service worker: required variable DATABASE_URL is not set")
    yield ("worker running a binary the image lacks",
           mutate(lambda d: d["services"]["worker"].__setitem__("command", ["wrker"])),
           "runs 'wrker', which the Dockerfile does not install")
    yield ("unpinned image",
           mutate(lambda d: d["services"]["redis"].__setitem__("image", "redis:latest")),
           "image 'redis:latest' is neither built by the Dockerfile nor a pinned official image")
    yield ("mount of a missing file",
           mutate(lambda d: d["services"]["proxy"].__setitem__("volumes", ["./deploy/missing.conf:/etc/nginx/conf.d/default.conf:ro"])),
           "mounts ./deploy/missing.conf, which does not exist")
    yield ("undeclared named volume",
           mutate(lambda d: d["volumes"].pop("minio-data")),
           "named volume 'minio-data' is not declared")
    yield ("stand-in on another port than the backends use",
           mutate(lambda d: d["services"]["ml-standin"]["environment"].__setitem__("STANDIN_LISTEN", "0.0.0.0:8001")),
           "but ml-standin listens on [8001]")
    yield ("schema violation",
           mutate(lambda d: d["services"]["redis"]["healthcheck"].__setitem__("intervall", "5s")),
           "schema: services/redis/healthcheck: 'intervall' does not match")
    yield ("unknown depends_on condition",
           mutate(lambda d: d["services"]["temporal"]["depends_on"]["postgres"].__setitem__("condition", "service_ready")),
           "schema: services/temporal/depends_on")
    yield ("unknown service key",
           mutate(lambda d: d["services"]["worker"].__setitem__("healthchek", {"test": ["CMD", "true"]})),
           "schema: services/worker")


def self_test(path: Path, repo: Repo, schema) -> list[str]:
    doc = load_yaml(path.read_text())
    failures = []
    with tempfile.TemporaryDirectory(prefix="check-compose-") as tmp:
        for i, (what, broken, expected) in enumerate(broken_copies(doc)):
            copy_path = Path(tmp) / f"broken-{i}.yml"
            copy_path.write_text(dump_yaml(broken))
            report = run_checks(copy_path, repo, schema)
            if not any(expected in p for p in report.problems):
                failures.append(f"self-test: a copy with {what} was not rejected with {expected!r}; "
                                f"problems found: {report.problems or 'none'}")
            else:
                print(f"  rejected: {what}")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--compose", type=Path, help="compose file (default: <root>/docker-compose.yml)")
    ap.add_argument("--no-self-test", action="store_true")
    args = ap.parse_args()
    root = args.root.resolve()
    compose = args.compose or root / "docker-compose.yml"

    repo = Repo(root)
    schema = compose_schema()
    failures: list[str] = []

    report = run_checks(compose, repo, schema)
    check_dockerignore(repo, report)
    for ok in report.passed:
        print(f"  ok: {ok}")
    failures += report.problems

    # The override examples are partial files: schema only.
    for extra in sorted((root / "deploy").glob("compose.*.yml")):
        r = run_checks(extra, repo, schema, consistency=False)
        for ok in r.passed:
            print(f"  ok: {ok}")
        failures += r.problems

    if not args.no_self_test:
        failures += self_test(compose, repo, schema)

    sys.stdout.flush()
    if failures:
        for f in failures:
            print(f"FAIL {f}", file=sys.stderr)
        print(f"compose check: {len(failures)} problem(s)", file=sys.stderr)
        return 1
    print("compose check: all good")
    return 0


if __name__ == "__main__":
    sys.exit(main())
