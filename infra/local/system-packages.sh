#!/usr/bin/env bash
# Debian packages the platform's local stack and tests need; installs only what is missing.
set -euo pipefail

packages=(
  openjdk-17-jre-headless  # the Kafka broker and Spark
  maven                    # resolves the broker's jars from Maven Central
  chromium                 # headless browser for the UI tests (reports, Airflow, MLflow)
  chromium-driver          # its WebDriver, driven by selenium
  openssh-server           # the loopback sshd the provisioning tests run Ansible against
  nodejs                   # runs JupyterHub's proxy (configurable-http-proxy, from npm)
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
# npm comes with NodeSource's nodejs, and as a package of its own with Debian's.
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
