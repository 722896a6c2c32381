#!/bin/sh
# Builds a language base image for generated Dockerfiles without a registry: a Debian root
# filesystem made with mmdebstrap (--variant=essential plus the few packages the language needs)
# and `docker import`ed. Idempotent: an image already present under its tag is kept.
#   sh infra/base-images/build.sh python|node [TAG]
# The host's extra CA certificates are copied in, so pip and npm inside a build trust what the
# host trusts.
set -eu

LANGUAGE="${1:?usage: build.sh python|node [TAG]}"
SUITE="${DOCKYARD_BASE_SUITE:-trixie}"
case "$LANGUAGE" in
    python) PACKAGES="python3,python3-venv,ca-certificates"
            CHANGES="ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1"
            DEFAULT_CMD='CMD ["python3"]' ;;
    # Debian's npm package drags in ~400 packages; npm's own tarball bundles its dependencies.
    node)   PACKAGES="nodejs,ca-certificates"
            CHANGES="ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false"
            DEFAULT_CMD='CMD ["node"]' ;;
    *) echo "build.sh: unknown language $LANGUAGE (python or node)" >&2; exit 2 ;;
esac
IMAGE="${2:-dockyard-base/$LANGUAGE:$SUITE}"

if ! command -v docker >/dev/null 2>&1; then
    echo "build.sh: the docker CLI is needed to import $IMAGE" >&2
    exit 1
fi
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build.sh: $IMAGE already present"
    exit 0
fi
if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "build.sh: mmdebstrap is needed to build $IMAGE (apt-get install mmdebstrap)" >&2
    exit 1
fi

NPM_HOOK=true
if [ "$LANGUAGE" = node ]; then
    command -v npm >/dev/null 2>&1 || { echo "build.sh: npm is needed to fetch npm itself" >&2; exit 1; }
    NPM_DIR="$(mktemp -d)"
    trap 'rm -rf "$NPM_DIR"' EXIT INT TERM
    (cd "$NPM_DIR" && npm pack --silent "npm@${DOCKYARD_NPM_VERSION:-10.9.2}" >/dev/null)
    NPM_HOOK="mkdir -p \"\$1/usr/local/lib/node_modules/npm\" && tar -xzf $NPM_DIR/npm-*.tgz -C \"\$1/usr/local/lib/node_modules/npm\" --strip-components=1 && ln -s ../lib/node_modules/npm/bin/npm-cli.js \"\$1/usr/local/bin/npm\" && ln -s ../lib/node_modules/npm/bin/npx-cli.js \"\$1/usr/local/bin/npx\""
fi
HOOK='for c in /usr/local/share/ca-certificates/*.crt; do [ -f "$c" ] && cp "$c" "$1/usr/local/share/ca-certificates/"; done; chroot "$1" update-ca-certificates >/dev/null 2>&1 || true'
TARBALL="$(mktemp --suffix=.tar)"
trap 'rm -f "$TARBALL"; rm -rf "${NPM_DIR:-}"' EXIT INT TERM
# Docs, man pages, locales and apt's lists are of no use in a base: they only cost CI time.
# Written to a file first: a failed bootstrap must never be imported half-made.
mmdebstrap --quiet --variant=essential --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="$HOOK" --customize-hook="$NPM_HOOK" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" "$TARBALL"
docker import --change "$CHANGES" --change "$DEFAULT_CMD" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$TARBALL" "$IMAGE" >/dev/null
echo "build.sh: built $IMAGE"
