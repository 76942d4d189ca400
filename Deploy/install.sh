#!/usr/bin/env bash
# Installs what charrnn needs to build and run on Debian or Ubuntu, and only what is missing.
# Run as root (or with sudo). Safe to run again.
set -euo pipefail

missing=()
for pkg in libopenblas-dev libzmq3-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    # Debian 13 and Ubuntu 24.04+ package a Swift toolchain; older releases need swift.org's.
    if apt-cache show swiftlang >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq swiftlang >/dev/null
    else
        echo "error: no Swift toolchain; install Swift 6 from https://www.swift.org/install/linux/ and run this again" >&2
        exit 1
    fi
fi
