#!/usr/bin/env bash
# A second Debian suite (e.g. trixie) for this machine's apt, in a separate state folder, for
# downloading other releases' packages without touching the system's own apt state.
#
#   .ci/debian_suite.sh STATE SUITE ARCH [ARCH...]     # first ARCH is apt's "native" one
#   APT_CONFIG=STATE/apt.conf apt-get download python3-numpy
#
# The mirrors and keys are the machine's own: every apt source of this host's release (its
# VERSION_CODENAME) is repeated with SUITE in its place, Signed-By and all. No mirror address
# is written into the project; it is read from /etc/apt at run time. The lists are refreshed
# when older than a day. The dpkg status of the state is empty: `apt-get install -d` then
# downloads a package's whole dependency closure, which is what an unpacked userland needs.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  echo "usage: $0 STATE SUITE ARCH [ARCH...]" >&2
  exit 2
fi
STATE=$(realpath -m "$1")
SUITE=$2
shift 2
ARCHS=("$@")

mkdir -p "$STATE/sources.list.d" "$STATE/preferences.d" "$STATE/lists/partial" \
  "$STATE/archives/partial"
touch "$STATE/status"

# The machine's sources for its own release, as deb822 stanzas for SUITE.
python3 - "$SUITE" "$STATE/sources.list.d/suite.sources" <<'PY'
import glob
import re
import sys

suite, out = sys.argv[1:]
release = {}
for line in open("/etc/os-release", encoding="utf-8"):
    if "=" in line:
        key, value = line.rstrip("\n").split("=", 1)
        release[key] = value.strip('"')
host = release.get("VERSION_CODENAME", "")
stanzas = []  # (uris, suites, components, signed_by)
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for block in open(path, encoding="utf-8").read().split("\n\n"):
        fields, key = {}, None
        for raw in block.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += "\n" + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        stanzas.append((fields.get("uris", "").split(), fields.get("suites", "").split(),
                        fields.get("components", "main").split(), fields.get("signed-by", "")))
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line.split("#", 1)[0])
        if m:
            opts = dict(re.findall(r"([\w-]+)=(\S+)", m.group(1) or ""))
            stanzas.append(([m.group(2)], [m.group(3)], m.group(4).split(), opts.get("signed-by", "")))
mapped = {"": suite, "-updates": f"{suite}-updates", "-security": f"{suite}-security"}
text = []
for uris, suites, components, signed_by in stanzas:
    ours = [mapped[s[len(host):]] for s in suites if host and s.startswith(host) and s[len(host):] in mapped]
    if not ours or not uris:
        continue
    text.append(f"Types: deb\nURIs: {' '.join(uris)}\nSuites: {' '.join(ours)}\n"
                f"Components: {' '.join(components)}\n"
                + (f"Signed-By: {signed_by}\n" if signed_by and "\n" not in signed_by else ""))
if not text:
    sys.exit(f"debian_suite: no apt source of this machine's release ({host or 'unknown'}) to "
             f"repeat for {suite}; see /etc/apt/sources.list.d")
open(out, "w", encoding="utf-8").write("\n".join(text))
PY

{
  echo "Dir::State \"$STATE\";"
  echo "Dir::State::lists \"$STATE/lists/\";"
  echo "Dir::State::status \"$STATE/status\";"
  echo "Dir::Cache \"$STATE\";"
  echo "Dir::Cache::archives \"$STATE/archives/\";"
  echo "Dir::Etc::sourcelist \"/dev/null\";"
  echo "Dir::Etc::sourceparts \"$STATE/sources.list.d\";"
  echo "Dir::Etc::preferencesparts \"$STATE/preferences.d\";"
  echo "Dir::Etc::preferences \"/dev/null\";"
  echo "APT::Architecture \"${ARCHS[0]}\";"
  echo "APT::Architectures { $(printf '"%s"; ' "${ARCHS[@]}")};"
  echo "APT::Install-Recommends \"false\";"
  echo "APT::Sandbox::User \"root\";"
} >"$STATE/apt.conf"

# Refresh the lists at most daily (and whenever the sources changed).
stamp="$STATE/lists/.binland-updated"
if [[ ! -f $stamp || -n $(find "$stamp" -mmin +1440) || "$STATE/sources.list.d/suite.sources" -nt $stamp ]]; then
  echo "debian_suite: apt-get update for $SUITE (${ARCHS[*]}) in $STATE" >&2
  APT_CONFIG="$STATE/apt.conf" apt-get update -q -o Debug::NoLocking=1 >&2
  touch "$stamp"
fi
