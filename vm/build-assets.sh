#!/usr/bin/env bash
# Builds the test guest: vm/.cache/vmlinuz (Debian's cloud kernel) and vm/.cache/initramfs.cpio.gz
# (busybox-static, vm/init, vm/scenario-lib.sh, vm/scenarios/*.sh, the kernel modules the guest
# needs, and the host's fio, mke2fs, e2fsck, blkdiscard and fstrim with their shared libraries).
#
# Owns: everything under vm/.cache (downloads, extracted kernel, outputs, stamp, lock).
# Does not own: booting (vm/boot.sh) or what runs in the guest (vm/init, vm/scenarios/).
#
# Idempotent: the outputs are rebuilt only when the stamp (a hash of this script, the guest
# files, the kernel package and host package versions, and the size/mtime of every host binary
# copied in) changes. Concurrent runs are serialised with flock on vm/.cache/build.lock.
#
# Needs (Debian 12): apt-get, dpkg-deb, ldd, cpio, gzip, flock and the packages busybox-static,
# fio, e2fsprogs, util-linux. Runs `apt-get update` once (as root) when the kernel package cannot
# be resolved. Environment: VUB_VM_CACHE (cache directory), VUB_KERNEL_PACKAGE (a linux-image
# package to use instead of the one linux-image-cloud-amd64 depends on).
set -euo pipefail

VM_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
CACHE=${VUB_VM_CACHE:-$VM_DIR/.cache}
KERNEL_META=linux-image-cloud-amd64
HOST_PACKAGES=(busybox-static fio e2fsprogs util-linux)
# guest path:host command name. Guest paths are fixed: scenarios call these by full path because
# busybox sh prefers its own applets over PATH.
TOOLS=(/usr/bin/fio:fio /usr/sbin/mke2fs:mke2fs /usr/sbin/e2fsck:e2fsck
    /usr/sbin/blkdiscard:blkdiscard /usr/sbin/fstrim:fstrim)
# Loaded with their dependencies unless built in. crc32c_generic is not a symbol dependency of
# ext4 (it is found through the crypto API), so it is listed and loaded when it is a module.
REQUIRED_MODULES=(virtio_pci virtio_blk ext4)
OPTIONAL_MODULES=(crc32c_generic)

log() { printf 'build-assets: %s\n' "$*"; }
die() {
    printf 'build-assets: error: %s\n' "$*" >&2
    exit 1
}

started=$SECONDS
mkdir -p "$CACHE"
if command -v flock >/dev/null; then
    exec 9>"$CACHE/build.lock"
    flock 9
fi

for cmd in apt-get apt-cache dpkg-deb dpkg-query ldd cpio gzip sha256sum busybox; do
    command -v "$cmd" >/dev/null || die "missing command '$cmd' (see vm/README.md)"
done

# --- Resolve inputs -------------------------------------------------------------------------

resolve_kernel() {
    local pkg=${VUB_KERNEL_PACKAGE:-}
    if [[ -z $pkg ]]; then
        pkg=$(apt-cache depends --important "$KERNEL_META" 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
    fi
    [[ -n $pkg ]] || return 1
    local ver
    ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')
    [[ -n $ver && $ver != "(none)" ]] || return 1
    printf '%s %s\n' "$pkg" "$ver"
}

# apt-cache takes about a second per call here, so the answer is remembered until apt's
# package lists change.
lists_key="${VUB_KERNEL_PACKAGE:-} $(stat -c %Y /var/lib/apt/lists 2>/dev/null || echo none)"
kernel=
if [[ -f $CACHE/kernel.resolved && $(head -n1 "$CACHE/kernel.resolved") == "$lists_key" ]]; then
    kernel=$(sed -n 2p "$CACHE/kernel.resolved")
fi
if [[ -z $kernel ]] && kernel=$(resolve_kernel); then
    printf '%s\n%s\n' "$lists_key" "$kernel" >"$CACHE/kernel.resolved"
fi
if [[ -z $kernel ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        log "kernel package not known to apt; running apt-get update"
        apt-get -q update >/dev/null || log "apt-get update failed"
    fi
    if ! kernel=$(resolve_kernel); then
        # Offline with a cache from an earlier build: keep using the kernel already extracted.
        previous=$(cat "$CACHE/kernel.id" 2>/dev/null || true)
        [[ -n $previous ]] || die "cannot resolve the package behind $KERNEL_META (apt-cache); run apt-get update"
        log "cannot resolve $KERNEL_META; reusing $previous from the cache"
        kernel=$previous
    fi
fi
read -r kernel_pkg kernel_ver <<<"$kernel"
kernel_dir=$CACHE/kernel/${kernel_pkg}_${kernel_ver//[:~]/_}

# Host files copied into the guest, with the shared libraries they load (ldd).
host_files=()
declare -A guest_path_of=()
add_host_file() { # host path, guest path
    [[ -n ${guest_path_of[$1]:-} ]] && return 0
    guest_path_of[$1]=$2
    host_files+=("$1")
}
for tool in "${TOOLS[@]}"; do
    guest=${tool%%:*}
    host=$(PATH=$PATH:/usr/sbin:/sbin command -v "${tool#*:}") ||
        die "'${tool#*:}' not found (install fio, e2fsprogs, util-linux)"
    add_host_file "$host" "$guest"
    ldd_out=$(ldd "$host") || die "ldd $host failed"
    while read -r lib; do
        add_host_file "$lib" "$lib"
    done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out")
    if grep -q 'not found' <<<"$ldd_out"; then
        die "$host needs libraries that are not installed: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t' ' ')"
    fi
done
busybox=$(command -v busybox)
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked; install busybox-static"
fi

stamp=$(
    {
        echo "kernel $kernel_pkg $kernel_ver"
        sha256sum "$VM_DIR/build-assets.sh" "$VM_DIR/init" "$VM_DIR/scenario-lib.sh"
        find "$VM_DIR/scenarios" -maxdepth 1 -name '*.sh' -print0 | LC_ALL=C sort -z |
            xargs -0 -r sha256sum
        dpkg-query -W -f '${Package} ${Version}\n' "${HOST_PACKAGES[@]}" 2>/dev/null ||
            die "missing packages: need ${HOST_PACKAGES[*]}"
        stat -L -c '%n %s %Y' "$busybox" "${host_files[@]}"
        stat -L -c '%n %s %Y' /etc/mke2fs.conf 2>/dev/null || true
    } | sha256sum | cut -d' ' -f1
)

if [[ -f $CACHE/vmlinuz && -f $CACHE/initramfs.cpio.gz && $(cat "$CACHE/stamp" 2>/dev/null) == "$stamp" ]]; then
    log "up to date ($kernel_pkg $kernel_ver)"
    exit 0
fi

# --- Kernel -----------------------------------------------------------------------------------

if [[ ! -f $kernel_dir/.extracted ]]; then
    deb_dir=$CACHE/debs/${kernel_pkg}_${kernel_ver//[:~]/_}
    mkdir -p "$deb_dir"
    if ! compgen -G "$deb_dir/*.deb" >/dev/null; then
        log "downloading $kernel_pkg $kernel_ver"
        (cd "$deb_dir" && apt-get -q -o APT::Sandbox::User=root download "$kernel_pkg=$kernel_ver") ||
            die "apt-get download $kernel_pkg=$kernel_ver failed (try apt-get update)"
    fi
    debs=("$deb_dir"/*.deb)
    log "extracting ${debs[0]##*/}"
    rm -rf "$kernel_dir"
    mkdir -p "$kernel_dir"
    dpkg-deb -x "${debs[0]}" "$kernel_dir"
    echo "$kernel_pkg $kernel_ver" >"$kernel_dir/.extracted"
    # Only the current kernel is kept.
    find "$CACHE/kernel" "$CACHE/debs" -mindepth 1 -maxdepth 1 \
        ! -name "${kernel_dir##*/}" -exec rm -rf {} +
fi
vmlinuz=$(compgen -G "$kernel_dir/boot/vmlinuz-*" | head -n1) || die "no vmlinuz in $kernel_pkg"
moddir=$(compgen -G "$kernel_dir/lib/modules/*" | head -n1) || die "no modules in $kernel_pkg"

# --- Initramfs tree ---------------------------------------------------------------------------

root=$CACHE/root
rm -rf "$root"
mkdir -p "$root"/{bin,dev,etc,lib/modules,lib/vub,mnt,proc,root,scenarios,sys,tmp,usr/bin,usr/sbin}

log "installing busybox and its applets"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
done
ln -s bin "$root/sbin"

log "copying ${#host_files[@]} host files (fio, e2fsprogs, util-linux tools and their libraries)"
for host in "${host_files[@]}"; do
    guest=$root${guest_path_of[$host]}
    mkdir -p "${guest%/*}"
    cp -L "$host" "$guest"
done
[[ ! -f /etc/mke2fs.conf ]] || cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"
ln -s /proc/mounts "$root/etc/mtab"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
# The kernel opens /dev/console for /init before devtmpfs is mounted.
if [[ $(id -u) -eq 0 ]]; then
    mknod -m 600 "$root/dev/console" c 5 1
fi

log "installing init, scenario-lib.sh and $(find "$VM_DIR/scenarios" -maxdepth 1 -name '*.sh' | wc -l) scenarios"
install -m 755 "$VM_DIR/init" "$root/init"
install -m 644 "$VM_DIR/scenario-lib.sh" "$root/lib/vub/scenario-lib.sh"
install -m 644 "$VM_DIR"/scenarios/*.sh "$root/scenarios/"

# Modules: resolve dependencies from each module's .modinfo "depends=" field (the .deb ships no
# modules.dep), decompress, and write the load order to /etc/vub-modules.
declare -A module_file=() builtin=() added=()
while IFS= read -r -d '' f; do
    name=${f##*/}
    name=${name%%.ko*}
    module_file[${name//-/_}]=$f
done < <(find "$moddir/kernel" -name '*.ko*' -print0)
while read -r line; do
    name=${line##*/}
    name=${name%%.ko*}
    builtin[${name//-/_}]=1
done <"$moddir/modules.builtin"

load_order=()
add_module() { # name
    local name=${1//-/_} file dep deps
    [[ -z ${builtin[$name]:-} && -z ${added[$name]:-} ]] || return 0
    file=${module_file[$name]:-}
    [[ -n $file ]] || die "kernel module $name is neither built in nor shipped in $kernel_pkg"
    added[$name]=1
    case $file in
        *.ko) cp "$file" "$root/lib/modules/$name.ko" ;;
        *.ko.xz) busybox xzcat "$file" >"$root/lib/modules/$name.ko" ;;
        *.ko.zst) zstd -q -dc "$file" >"$root/lib/modules/$name.ko" ;;
        *.ko.gz) gzip -dc "$file" >"$root/lib/modules/$name.ko" ;;
        *) die "unknown module compression: $file" ;;
    esac
    deps=$(tr '\0' '\n' <"$root/lib/modules/$name.ko" | sed -n 's/^depends=//p' | head -n1)
    for dep in ${deps//,/ }; do
        add_module "$dep"
    done
    load_order+=("$name")
}
for m in "${REQUIRED_MODULES[@]}"; do add_module "$m"; done
for m in "${OPTIONAL_MODULES[@]}"; do
    [[ -z ${module_file[$m]:-} ]] || add_module "$m"
done
printf '%s\n' "${load_order[@]}" >"$root/etc/vub-modules"
log "modules (load order): ${load_order[*]:-none, all built in}"

# --- Outputs ----------------------------------------------------------------------------------

log "packing initramfs"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -n -1 >"$CACHE/initramfs.cpio.gz.tmp"
mv "$CACHE/initramfs.cpio.gz.tmp" "$CACHE/initramfs.cpio.gz"
cp "$vmlinuz" "$CACHE/vmlinuz.tmp"
mv "$CACHE/vmlinuz.tmp" "$CACHE/vmlinuz"
echo "$kernel_pkg $kernel_ver" >"$CACHE/kernel.id"
echo "$stamp" >"$CACHE/stamp"
rm -rf "$root"
log "built $CACHE/vmlinuz ($(du -h "$CACHE/vmlinuz" | cut -f1)) and initramfs.cpio.gz ($(du -h "$CACHE/initramfs.cpio.gz" | cut -f1)) in $((SECONDS - started))s"
