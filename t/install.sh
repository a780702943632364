#!/bin/bash
# make install / make uninstall into a staging DESTDIR: every file lands
# where Debian puts its nginx modules and services, the sidecar accepts the
# installed configuration, nginx loads the installed module, the unit is
# hardened, a reinstall keeps the operator's configuration, and uninstall
# removes everything but the configuration. Nothing outside the staging
# directory is touched.
#
#   t/install.sh [BUILD_DIR]       (default: build)

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
b=${1:-build}
nginx=${NGINX:-/usr/sbin/nginx}
cd "$root"

dest=$(mktemp -d /tmp/ngx-llm-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT

fail() { echo "install: FAIL: $*"; exit 1; }
pass() { echo "install: ok: $*"; }

# the Makefile includes obs.mk; until it does, name it explicitly
mk=(-f Makefile)
grep -q 'obs\.mk' Makefile || mk+=(-f obs.mk)

make -s "${mk[@]}" B="$b" DESTDIR="$dest" install > "$dest.log" 2>&1 \
    || { cat "$dest.log"; rm -f "$dest.log"; fail "make install"; }
rm -f "$dest.log"

for f in usr/lib/nginx/modules/ngx_http_llm_module.so \
         usr/share/nginx/modules-available/mod-http-llm.conf \
         usr/sbin/llm-sidecar lib/systemd/system/llm-sidecar.service \
         usr/lib/sysusers.d/llm-sidecar.conf \
         usr/share/ngx-llm/prometheus/alerts.yml \
         usr/share/ngx-llm/grafana/ngx_llm.json \
         usr/share/ngx-llm/sidecar.json.example \
         etc/llm-sidecar/sidecar.json etc/llm-sidecar/prices.json
do
    [ -f "$dest/$f" ] || fail "$f not installed"
done
pass "files in place"

[ -x "$dest/usr/sbin/llm-sidecar" ] || fail "llm-sidecar not executable"
[ "$(stat -c %a "$dest/etc/llm-sidecar/sidecar.json")" = 600 ] \
    || fail "sidecar.json (admin token) is not mode 0600"

# the Debian way: a snippet in modules-available, enabled by a symlink
[ "$(cat "$dest/usr/share/nginx/modules-available/mod-http-llm.conf")" \
  = "load_module modules/ngx_http_llm_module.so;" ] || fail "snippet"
[ "$(readlink "$dest/etc/nginx/modules-enabled/50-mod-http-llm.conf")" \
  = /usr/share/nginx/modules-available/mod-http-llm.conf ] \
    || fail "modules-enabled link"
pass "modules-available snippet, enabled"

# nginx loads the installed module
mkdir -p "$dest/ngx/logs" "$dest/ngx/conf"
cat > "$dest/ngx/conf/nginx.conf" << EOC
load_module $dest/usr/lib/nginx/modules/ngx_http_llm_module.so;
error_log logs/error.log;
pid logs/nginx.pid;
events { }
http { server { listen 127.0.0.1:19252; location = /m { llm_metrics; } } }
EOC
"$nginx" -p "$dest/ngx/" -c conf/nginx.conf -t -q 2>&1 || fail "nginx -t"
pass "nginx -t with the installed module"

# the sidecar accepts the installed configuration, with the unit's paths
cfg=$dest/etc/llm-sidecar/sidecar.json
"$dest/usr/sbin/llm-sidecar" --config "$cfg" --check > /dev/null \
    || fail "llm-sidecar --check on the installed configuration"
grep -q '"/run/llm-sidecar/sidecar.sock"' "$cfg" || fail "socket path"
grep -q '"/var/lib/llm-sidecar"' "$cfg" || fail "data_dir"
grep -q 'change-me-admin-token' "$cfg" && fail "default admin token installed"
pass "llm-sidecar --check, own admin token"

# the unit: hardened as systemd measures it
unit=$dest/lib/systemd/system/llm-sidecar.service
for o in User=llm-sidecar RuntimeDirectory=llm-sidecar NoNewPrivileges=yes \
         ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
         ReadWritePaths=/var/lib/llm-sidecar
do
    grep -qx "$o" "$unit" || fail "unit lacks $o"
done
if command -v systemd-analyze > /dev/null; then
    score=$(systemd-analyze security --offline=yes "$unit" 2> /dev/null \
            | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    [ -n "$score" ] || fail "systemd-analyze security gave no score"
    awk -v s="$score" 'BEGIN { exit !(s <= 2.5) }' \
        || fail "unit exposure $score > 2.5"
    pass "unit exposure level $score (systemd-analyze security)"
fi

# a reinstall keeps the operator's configuration
echo ' ' >> "$cfg"
sum=$(md5sum < "$cfg")
make -s "${mk[@]}" B="$b" DESTDIR="$dest" install > /dev/null 2>&1 \
    || fail "second make install"
[ "$(md5sum < "$cfg")" = "$sum" ] || fail "reinstall overwrote sidecar.json"
pass "reinstall keeps sidecar.json"

make -s "${mk[@]}" B="$b" DESTDIR="$dest" uninstall > /dev/null 2>&1 \
    || fail "make uninstall"
rm -rf "$dest/ngx"
left=$(cd "$dest" && find . -type f -o -type l | sort | tr '\n' ' ')
[ "$left" = "./etc/llm-sidecar/prices.json ./etc/llm-sidecar/sidecar.json " ] \
    || fail "uninstall left: $left"
pass "uninstall removes all but the configuration"
