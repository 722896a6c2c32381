#!/bin/sh
# Builds dockyard-test/busybox:latest without a registry: a root filesystem made of the host's
# static busybox and its applet links, packed with tar and `docker import`ed. Idempotent.
set -eu

IMAGE="${DOCKYARD_TEST_IMAGE:-dockyard-test/busybox:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

if ! command -v docker >/dev/null 2>&1; then
    echo "build.sh: the docker CLI is needed to import the test image" >&2
    exit 1
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build.sh: $IMAGE already present"
    exit 0
fi

# A dynamically linked busybox would need the host's libc inside the image.
if [ ! -x "$BUSYBOX" ] || ! "$BUSYBOX" --list >/dev/null 2>&1 \
        || { command -v file >/dev/null 2>&1 && ! file -L "$BUSYBOX" | grep -q 'statically linked'; }; then
    echo "build.sh: a static busybox is needed at $BUSYBOX: install Debian's busybox-static" \
         "(apt-get install busybox-static)" >&2
    exit 1
fi

ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT INT TERM
mkdir -p "$ROOT/bin" "$ROOT/sbin" "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/tmp" "$ROOT/www" \
         "$ROOT/etc" "$ROOT/root" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -sf /bin/busybox "$ROOT/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"

tar -C "$ROOT" -cf - . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    - "$IMAGE" >/dev/null
echo "build.sh: built $IMAGE"
