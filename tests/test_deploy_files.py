"""What a user follows from a clone: the deployment files under deploy/ and the docs.

The files are read as systemd, Docker and Kubernetes read them, and checked against hostkit
itself rather than against a copy that could go stale:

- every hostkit setting they name (``HOSTKIT_*`` variables, ``--key=value`` arguments) is read
  by :func:`load_configuration` as a key of hostkit's schema (a renamed key fails here);
- the probe and health-check paths are the configured health paths; the ports of the urls,
  the container, the probes and the Service agree; the time a stop may take is at least
  ``shutdown_delay + shutdown_timeout`` plus room for the app's shutdown;
- the Dockerfile's RUN and CMD lines that run python or hostkit are the README's install and
  run commands: the ``sh`` blocks of the README section :data:`INSTALL_HEADING`, less its
  ``git clone`` (the Docker build context is that clone), in the same order;
- every relative link of README.md and docs/*.md reaches a file of the repository (and a
  heading, with ``#anchor``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import re
import shlex
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hostkit_outofprocess.options import MODULE_TABLE

from hostkit import HostingModel
from hostkit.configuration import Configuration, load_configuration
from hostkit.configuration.reference import builtin_plugin_tables
from hostkit.configuration.schema import Schema
from hostkit.listeners import parse_url

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
README = ROOT / "README.md"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
SERVICE_UNIT = DEPLOY / "systemd" / "hostkit-hello.service"
SOCKET_UNIT = DEPLOY / "systemd" / "hostkit-hello.socket"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKER_IGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
KUBERNETES = DEPLOY / "kubernetes" / "hello.yaml"

#: The README section whose ``sh`` blocks are the install and run commands.
INSTALL_HEADING = "## Install into your own project"
#: The folder the systemd unit runs (its WorkingDirectory is a copy of it: docs/deployment.md).
SYSTEMD_APP = ROOT / "samples" / "hello"
#: Seconds a stop may need beyond shutdown_delay + shutdown_timeout: the app's lifespan
#: shutdown and the process exit.
STOP_MARGIN = 5
#: The first file descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3

SCHEMA = Schema(builtin_plugin_tables())


# -- reading the files as their tools read them ----------------------------------------------


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: {section: {key: [values, in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in _joined_lines(path.read_text(), comment_prefixes=("#", ";")):
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert equals and current is not None, f"{path.name}: not a unit line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_value(unit: Mapping[str, Mapping[str, list[str]]], section: str, key: str) -> str:
    """The one value of ``key`` in ``section``; fails when it is missing or repeated."""
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= is set {len(values)} times, expected once"
    return values[0]


@dataclasses.dataclass(frozen=True)
class Instruction:
    name: str       # upper case: FROM, RUN, CMD, ...
    argument: str   # the rest, continuation lines joined


def read_dockerfile(path: Path) -> list[Instruction]:
    instructions = []
    for line in _joined_lines(path.read_text(), comment_prefixes=("#",)):
        name, _, argument = line.partition(" ")
        instructions.append(Instruction(name.upper(), argument.strip()))
    return instructions


def _joined_lines(text: str, comment_prefixes: tuple[str, ...]) -> Iterator[str]:
    """Non-empty lines with comment lines dropped and ``\\`` continuations joined (comment
    lines inside a continuation are dropped too, as Docker and systemd drop them)."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(comment_prefixes):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    assert not pending, "a continuation line ends the file"


def dockerfile_environment(instructions: Sequence[Instruction]) -> dict[str, str]:
    environment: dict[str, str] = {}
    for instruction in instructions:
        if instruction.name != "ENV":
            continue
        words = shlex.split(instruction.argument)
        if "=" not in words[0]:  # the legacy form: ENV NAME value
            environment[words[0]] = instruction.argument.split(None, 1)[1]
            continue
        for word in words:
            name, equals, value = word.partition("=")
            assert equals, f"ENV {instruction.argument!r}: {word!r} is not NAME=value"
            environment[name] = value
    return environment


def exec_form(argument: str) -> list[str]:
    """A CMD in exec form (a JSON array): the only form that makes hostkit PID 1, so that it
    gets docker stop's SIGTERM itself."""
    command = json.loads(argument)
    assert isinstance(command, list) and all(isinstance(word, str) for word in command)
    return command


def read_yaml(path: Path) -> list[Any]:
    """The documents of a YAML file written in the block subset Kubernetes manifests use.

    PyYAML is not among hostkit's dependencies; this reads block mappings, block sequences,
    plain, single- and double-quoted scalars, ``#`` comments and ``---`` separators, and
    refuses anything else (flow collections, anchors, tags, block scalars, tabs) instead of
    reading it wrongly.
    """
    documents: list[list[tuple[int, int, str]]] = [[]]
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        assert "\t" not in raw, f"{path.name}:{number}: a tab"
        line = _strip_yaml_comment(raw).rstrip()
        if line == "---":
            documents.append([])
        elif line.strip():
            documents[-1].append((number, len(line) - len(line.lstrip(" ")), line.strip()))
    parsed = []
    for tokens in documents:
        if not tokens:
            continue
        value, index = _yaml_node(path, tokens, 0, tokens[0][1])
        assert index == len(tokens), f"{path.name}:{tokens[index][0]}: unexpected indentation"
        parsed.append(value)
    return parsed


_YAML_KEY = re.compile(r"^([A-Za-z0-9_./-]+):(?: +(.*))?$")


def _strip_yaml_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] == " "):
            return line[:index]
    return line


def _yaml_node(path: Path, tokens: list[tuple[int, int, str]], index: int,
               indent: int) -> tuple[Any, int]:
    if tokens[index][2] == "-" or tokens[index][2].startswith("- "):
        return _yaml_sequence(path, tokens, index, indent)
    return _yaml_mapping(path, tokens, index, indent)


def _yaml_mapping(path: Path, tokens: list[tuple[int, int, str]], index: int,
                  indent: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while index < len(tokens) and tokens[index][1] == indent:
        number, _, text = tokens[index]
        match = _YAML_KEY.match(text)
        assert match, f"{path.name}:{number}: not a 'key: value' line: {text!r}"
        key, rest = match.group(1), match.group(2)
        assert key not in result, f"{path.name}:{number}: {key!r} twice"
        index += 1
        if rest:
            result[key] = _yaml_scalar(path, number, rest)
        elif index < len(tokens) and tokens[index][1] > indent:
            result[key], index = _yaml_node(path, tokens, index, tokens[index][1])
        else:
            result[key] = None
    if index < len(tokens) and tokens[index][1] > indent:
        raise AssertionError(f"{path.name}:{tokens[index][0]}: unexpected indentation")
    return result, index


def _yaml_sequence(path: Path, tokens: list[tuple[int, int, str]], index: int,
                   indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while (index < len(tokens) and tokens[index][1] == indent
           and (tokens[index][2] == "-" or tokens[index][2].startswith("- "))):
        number, _, text = tokens[index]
        content = text[1:].lstrip(" ")
        if not content:
            index += 1
            assert index < len(tokens) and tokens[index][1] > indent, f"{path.name}:{number}"
            item, index = _yaml_node(path, tokens, index, tokens[index][1])
        elif _YAML_KEY.match(content):
            # "- key: value" opens a mapping whose keys line up with "key".
            inner = indent + len(text) - len(content)
            tokens[index] = (number, inner, content)
            item, index = _yaml_mapping(path, tokens, index, inner)
        else:
            item, index = _yaml_scalar(path, number, content), index + 1
        items.append(item)
    if index < len(tokens) and tokens[index][1] > indent:
        raise AssertionError(f"{path.name}:{tokens[index][0]}: unexpected indentation")
    return items, index


def _yaml_scalar(path: Path, number: int, text: str) -> Any:
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("'"):
        assert text.endswith("'") and len(text) > 1, f"{path.name}:{number}: {text!r}"
        return text[1:-1].replace("''", "'")
    assert text[0] not in "[]{}&*!|>%@`", f"{path.name}:{number}: outside the subset: {text!r}"
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    return text


def readme_install_commands() -> list[list[str]]:
    """The commands of the ``sh`` blocks of the README's :data:`INSTALL_HEADING` section,
    each split into words, comments left out."""
    text = README.read_text()
    assert INSTALL_HEADING + "\n" in text, f"README.md has no {INSTALL_HEADING!r} section"
    section = text.split(INSTALL_HEADING + "\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    assert commands, f"README.md's {INSTALL_HEADING!r} has no sh block"
    return commands


# -- hostkit's view of what a file sets ----------------------------------------------------


def hostkit_configuration(environ: Mapping[str, str], args: Sequence[str],
                          content_root: Path) -> Configuration:
    """The configuration hostkit runs with ``environ`` and ``args`` in ``content_root``.

    Fails unless every ``HOSTKIT_*`` variable and every argument is read as one of the
    schema's settings: not an app value, not an unknown variable warned about and skipped.
    """
    configuration = load_configuration(list(args), dict(environ), content_root=content_root
                                       ).with_tables(builtin_plugin_tables())
    read_as = {entry.source.name: entry.key for entry in configuration.entries()
               if entry.source.kind in ("environment", "argument")}
    named = [name for name in environ if name.upper().startswith("HOSTKIT_")] + list(args)
    for name in named:
        assert name in read_as, f"{name} sets no hostkit setting"
        key = tuple(read_as[name].split("."))
        assert key in SCHEMA.fields(), f"{name} sets {read_as[name]!r}, not a hostkit setting"
    return configuration


def stop_budget(configuration: Configuration) -> float:
    """Seconds hostkit may take to stop after SIGTERM, before :data:`STOP_MARGIN`."""
    options = configuration.options
    seconds = options.shutdown_delay + options.shutdown_timeout
    if options.hosting_model is HostingModel.OUT_OF_PROCESS:
        seconds += configuration.bind(MODULE_TABLE).shutdown_time_limit
    return seconds


def http_port(configuration: Configuration) -> int:
    """The port of the one http:// url the configuration serves."""
    urls = configuration.options.urls
    assert len(urls) == 1, f"expected one url, got {urls}"
    address = parse_url(urls[0])
    assert address.scheme == "http", urls[0]
    return address.port


def seconds(value: str) -> float:
    """A systemd time span in seconds: ``45``, ``45s``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def attribute_of(folder: Path, target: str) -> Any:
    """The object ``MODULE:ATTR`` names, imported from ``folder`` as ``hostkit run`` would
    import it from there."""
    module_name, _, attribute = target.partition(":")
    spec = importlib.util.spec_from_file_location(
        f"deployed_{module_name}", folder / f"{module_name}.py")
    assert spec is not None and spec.loader is not None, f"no {module_name}.py in {folder}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value: Any = module
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def run_command() -> list[str]:
    """The README's ``hostkit run`` command."""
    commands = [words for words in readme_install_commands() if words[0] == "hostkit"]
    assert len(commands) == 1, f"expected one hostkit command in the README, got {commands}"
    return commands[0]


# -- systemd ---------------------------------------------------------------------------------


def service_configuration() -> tuple[dict[str, dict[str, list[str]]], list[str], Configuration]:
    unit = read_unit(SERVICE_UNIT)
    command = shlex.split(unit_value(unit, "Service", "ExecStart"))
    readme = run_command()
    assert Path(command[0]).name == readme[0], "ExecStart runs another program than hostkit"
    assert command[1:len(readme)] == readme[1:], "ExecStart is not the README's run command"
    environ = {}
    for assignment in unit["Service"].get("Environment", []):
        for word in shlex.split(assignment):
            name, _, value = word.partition("=")
            environ[name] = value
    configuration = hostkit_configuration(environ, command[len(readme):], SYSTEMD_APP)
    return unit, command, configuration


def test_the_service_is_a_notify_service_on_the_sockets_systemd_passes() -> None:
    unit, command, configuration = service_configuration()
    socket = read_unit(SOCKET_UNIT)
    assert SOCKET_UNIT.stem == SERVICE_UNIT.stem, "a socket activates the service of its name"
    assert SOCKET_UNIT.name in unit_value(unit, "Unit", "Requires").split()
    listens = socket["Socket"].get("ListenStream", [])
    assert len(listens) == 1
    assert configuration.options.urls == (f"fd://{LISTEN_FDS_START}",)
    assert unit_value(unit, "Service", "Type") == "notify"
    assert unit_value(unit, "Service", "NotifyAccess") == "main"
    assert unit_value(unit, "Service", "KillSignal") == "SIGTERM"
    # SIGTERM to the main process only: a supervisor stops its workers in order itself.
    assert unit_value(unit, "Service", "KillMode") == "mixed"
    target = command[len(run_command()) - 1]
    assert callable(attribute_of(SYSTEMD_APP, target))


def test_the_service_runs_as_a_user_that_is_not_root() -> None:
    unit = read_unit(SERVICE_UNIT)
    users = unit["Service"].get("User", [])
    assert unit["Service"].get("DynamicUser") == ["yes"] or (
        users and users[-1] not in ("root", "0"))


def test_the_service_may_stop_for_as_long_as_hostkit_needs() -> None:
    unit, _, configuration = service_configuration()
    stop = seconds(unit_value(unit, "Service", "TimeoutStopSec"))
    assert stop >= stop_budget(configuration) + STOP_MARGIN


def test_systemctl_reload_is_a_rolling_replacement() -> None:
    unit, _, configuration = service_configuration()
    assert unit_value(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    options = configuration.options
    # Without a supervisor, an InProcess host has nobody to replace it: SIGHUP only logs so.
    assert (options.workers.supervised
            or options.hosting_model is HostingModel.OUT_OF_PROCESS)


# -- Docker ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Image:
    instructions: list[Instruction]
    environment: dict[str, str]
    command: list[str]
    content_root: Path          # the repository folder copied to the final WORKDIR

    def all(self, name: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.name == name]

    def one(self, name: str) -> Instruction:
        found = self.all(name)
        assert len(found) == 1, f"the Dockerfile has {len(found)} {name} lines, expected 1"
        return found[0]


def read_image() -> Image:
    instructions = read_dockerfile(DOCKERFILE)
    workdir, copies = "/", {}
    for instruction in instructions:
        if instruction.name == "WORKDIR":
            workdir = str(Path(workdir, instruction.argument))
        elif instruction.name == "COPY":
            source, destination = shlex.split(instruction.argument)
            copies[str(Path(workdir, destination))] = source
    assert workdir in copies, "the final WORKDIR is not a folder the Dockerfile copies"
    command = [exec_form(i.argument) for i in instructions if i.name == "CMD"]
    assert len(command) == 1
    return Image(instructions, dockerfile_environment(instructions), command[0],
                 ROOT / copies[workdir])


def image_configuration(image: Image) -> Configuration:
    readme = run_command()
    assert image.command[:len(readme)] == readme
    return hostkit_configuration(image.environment, image.command[len(readme):],
                                 image.content_root)


def test_the_dockerfile_runs_the_readmes_commands() -> None:
    image = read_image()
    readme = readme_install_commands()
    clones = [words for words in readme if words[:2] == ["git", "clone"]]
    assert len(clones) == 1, "the README installs from one clone"
    # The build context is that clone: it is copied whole under the clone's folder name.
    assert image.all("COPY")[0].argument.split() == [".", clones[0][-1]]
    docker = [shlex.split(i.argument) for i in image.all("RUN")] + [image.command]
    docker = [words for words in docker if Path(words[0]).name in ("python", "pip", "hostkit")]
    assert docker == [words for words in readme if words not in clones]


def test_the_image_is_slim_runs_as_non_root_and_stops_on_sigterm() -> None:
    image = read_image()
    assert image.one("FROM").argument.split(":")[1].endswith("-slim")
    user = image.one("USER").argument
    # By number, so that Kubernetes' runAsNonRoot can check it.
    assert user.isdigit() and int(user) != 0
    assert image.instructions.index(image.one("USER")) < image.instructions.index(
        image.one("CMD"))
    assert image.one("STOPSIGNAL").argument == "SIGTERM"
    assert attribute_of(image.content_root, image.command[len(run_command()) - 1])


def test_the_image_serves_every_interface_on_the_port_it_exposes() -> None:
    image = read_image()
    configuration = image_configuration(image)
    address = parse_url(configuration.options.urls[0])
    assert address.host == "0.0.0.0"
    assert image.one("EXPOSE").argument.split() == [str(http_port(configuration))]


def test_the_healthcheck_asks_a_health_path_hostkit_answers() -> None:
    image = read_image()
    configuration = image_configuration(image)
    healthcheck = image.one("HEALTHCHECK").argument
    command = exec_form(healthcheck.split(" CMD ", 1)[1])
    urls = re.findall(r"http://[^'\"\s]+", " ".join(command))
    assert len(urls) == 1
    url = urllib.parse.urlsplit(urls[0])
    assert url.port == http_port(configuration)
    health = configuration.options.health
    assert url.path in (health.liveness_path, health.readiness_path)
    assert url.path


def test_the_build_context_keeps_what_the_image_needs() -> None:
    patterns = [line.strip() for line in DOCKER_IGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert ".venv" in patterns and ".git" in patterns
    image = read_image()
    needed = ["pyproject.toml", "README.md", "hostkit", "plugins",
              *(shlex.split(i.argument)[0] for i in image.all("COPY"))]
    for path in needed:
        if path == ".":
            continue
        prefixes = [str(Path(*Path(path).parts[:n])) for n in range(1, len(Path(path).parts) + 1)]
        for pattern in patterns:
            assert not any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes), (
                f"{DOCKER_IGNORE.name} leaves {path} out ({pattern})")


# -- Kubernetes ------------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    documents = read_yaml(KUBERNETES)
    kinds = {document["kind"]: document for document in documents}
    assert sorted(kinds) == ["Deployment", "Service"]
    return kinds


def pod_configuration() -> tuple[dict[str, Any], dict[str, Any], Configuration]:
    """The Deployment's pod spec, its container, and the configuration hostkit runs with in
    it: the image's environment, then the container's (as Kubernetes merges them)."""
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    containers = pod["containers"]
    assert len(containers) == 1
    container = containers[0]
    assert "command" not in container and "args" not in container, "the image's CMD runs"
    image = read_image()
    environment = dict(image.environment)
    for variable in container.get("env", []):
        assert isinstance(variable["value"], str), f"{variable['name']}: a value is a string"
        environment[variable["name"]] = variable["value"]
    readme = run_command()
    configuration = hostkit_configuration(environment, image.command[len(readme):],
                                          image.content_root)
    return pod, container, configuration


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A port of the container by number or name; fails when the container has none such."""
    ports = {entry.get("name"): entry["containerPort"] for entry in container["ports"]}
    number = ports.get(port) if isinstance(port, str) else port
    assert number in ports.values(), f"the container has no port {port!r}"
    return number  # type: ignore[return-value]


def test_the_probes_are_the_health_paths_on_the_serving_port() -> None:
    _, container, configuration = pod_configuration()
    health = configuration.options.health
    probes = {"readinessProbe": health.readiness_path, "livenessProbe": health.liveness_path}
    for probe, path in probes.items():
        request = container[probe]["httpGet"]
        assert path and request["path"] == path, f"{probe} asks {request['path']}"
        assert container_port(container, request["port"]) == http_port(configuration)


def test_the_service_sends_traffic_to_the_serving_port_of_these_pods() -> None:
    kinds = manifests()
    _, container, configuration = pod_configuration()
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = kinds["Service"]["spec"]["selector"]
    assert selector.items() <= labels.items()
    assert kinds["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for port in kinds["Service"]["spec"]["ports"]:
        assert container_port(container, port["targetPort"]) == http_port(configuration)


def test_the_metrics_listener_is_a_port_of_the_container() -> None:
    _, container, configuration = pod_configuration()
    urls = configuration.options.metrics.urls
    assert urls, "the manifest shows the metrics listener"
    for url in urls:
        address = parse_url(url)
        assert address.host == "0.0.0.0"
        assert container_port(container, address.port) != http_port(configuration)


def test_the_grace_period_covers_the_shutdown_delay_and_the_drain() -> None:
    pod, _, configuration = pod_configuration()
    assert configuration.options.shutdown_delay > 0, "the endpoints' removal lags SIGTERM"
    assert pod["terminationGracePeriodSeconds"] >= stop_budget(configuration) + STOP_MARGIN


def test_the_pod_has_no_service_link_variables_and_runs_as_non_root() -> None:
    pod, _, _ = pod_configuration()
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_deployment_runs_the_image_the_docs_build() -> None:
    _, container, _ = pod_configuration()
    built = re.findall(r"docker build -f deploy/docker/Dockerfile -t (\S+) \.",
                       DEPLOYMENT_DOC.read_text())
    assert built == [container["image"]]


def test_the_yaml_reader_refuses_what_it_does_not_read(tmp_path: Path) -> None:
    for text in ("a: [1, 2]\n", "a: &anchor 1\n", "a: |\n  text\n", "a: 1\n   b: 2\n",
                 "- a\nb: 1\n"):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(AssertionError):
            read_yaml(path)
    path = tmp_path / "good.yaml"
    path.write_text("a:\n  - name: x  # a comment\n    value: \"5\"\n  - 'y'\nb: 2\n---\nc: true\n")
    assert read_yaml(path) == [{"a": [{"name": "x", "value": "5"}, "y"], "b": 2}, {"c": True}]


# -- the docs --------------------------------------------------------------------------------


DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def headings_of(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def links_of(path: Path) -> Iterator[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    for match in _LINK.finditer(text):
        yield match.group(1)


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_of_the_repository(document: Path) -> None:
    for link in links_of(document):
        if re.match(r"^[a-z]+:", link):
            continue  # https:, mailto:
        target, _, anchor = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        assert path.is_relative_to(ROOT), f"{link} leaves the repository"
        assert path.exists(), f"{link}: no such file"
        if anchor:
            assert anchor in headings_of(path), f"{link}: no such heading"


def test_the_readme_links_every_docs_page_and_names_only_real_make_targets() -> None:
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in links_of(README)}
    for page in (ROOT / "docs").glob("*.md"):
        assert page.resolve() in linked, f"README.md does not link {page.name}"
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(),
                             re.MULTILINE))
    for target in re.findall(r"\bmake ([a-z][\w-]*)", README.read_text()):
        assert target in targets, f"README.md names make {target}, which the Makefile lacks"


def test_the_deployment_doc_links_every_deployment_file() -> None:
    linked = {(DEPLOYMENT_DOC.parent / link.partition("#")[0]).resolve()
              for link in links_of(DEPLOYMENT_DOC)}
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert path.resolve() in linked, f"docs/deployment.md does not link {path.name}"
