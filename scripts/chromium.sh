#!/usr/bin/env bash
# chromium.sh — Debian's chromium package, for the page test of execute
# (test/view_test.go drives it headless with chromedp).
#
#   scripts/chromium.sh install   apt-get install chromium when no chromium is on PATH (root, or sudo)
#   scripts/chromium.sh path      print the browser's path (the value for COUNCIL_CHROMIUM)
#
# A machine that cannot install it (no apt-get, no root) fails here, loudly:
# the page test fails without a browser, it never skips.
set -euo pipefail

find_browser() {
	if [ -n "${COUNCIL_CHROMIUM:-}" ] && [ -x "$COUNCIL_CHROMIUM" ]; then
		echo "$COUNCIL_CHROMIUM"
		return 0
	fi
	for b in chromium chromium-browser google-chrome-stable google-chrome; do
		if command -v "$b" >/dev/null 2>&1; then
			command -v "$b"
			return 0
		fi
	done
	return 1
}

case "${1:-install}" in
install)
	if b="$(find_browser)"; then
		echo "chromium: $b ($("$b" --version 2>/dev/null || echo unknown version))"
		exit 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "chromium.sh: no chromium on PATH and no apt-get to install Debian's package: install chromium, or set COUNCIL_CHROMIUM" >&2
		exit 1
	fi
	SUDO=""
	if [ "$(id -u)" != 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "chromium.sh: installing chromium needs root (or sudo)" >&2
			exit 1
		fi
		SUDO="sudo -n"
	fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
	b="$(find_browser)"
	echo "chromium: $b ($("$b" --version 2>/dev/null || echo unknown version))"
	;;
path)
	find_browser || { echo "chromium.sh: no chromium: run scripts/chromium.sh install" >&2; exit 1; }
	;;
*)
	echo "usage: scripts/chromium.sh install|path" >&2
	exit 2
	;;
esac
