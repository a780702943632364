# ngx_llm: observability and operations (issue 8). Included by the Makefile.
#
#   make install      the module into Debian's module directory with its
#                     modules-available snippet (enabled like Debian's
#                     libnginx-mod-* packages do), the sidecar binary, its
#                     systemd unit and system user, the alert rules and the
#                     dashboard; default configuration files only where
#                     none exist (a reinstall keeps the operator's edits)
#   make uninstall    removes what install put there, except the
#                     configuration files and the sidecar's data
#   make test-obs     the status page in headless chromium under load, and
#                     install / uninstall into a staging DESTDIR
#
# DESTDIR stages an install (nothing outside it is touched, no user is
# created, systemd is not told). Needs: chromium (test-obs).

OBS_PKGS        := chromium

DESTDIR         ?=
PREFIX          ?= /usr
NGX_MODULES_DIR ?= $(PREFIX)/lib/nginx/modules
NGX_AVAILABLE   ?= $(PREFIX)/share/nginx/modules-available
NGX_ENABLED     ?= /etc/nginx/modules-enabled
SBIN_DIR        ?= $(PREFIX)/sbin
UNIT_DIR        ?= /lib/systemd/system
SYSUSERS_DIR    ?= $(PREFIX)/lib/sysusers.d
SIDECAR_ETC     ?= /etc/llm-sidecar
SHARE_DIR       ?= $(PREFIX)/share/ngx-llm
SIDECAR_BIN     ?= $(B)/sidecar/llm-sidecar

OBS_INSTALLED   := $(NGX_MODULES_DIR)/ngx_http_llm_module.so \
                   $(NGX_AVAILABLE)/mod-http-llm.conf \
                   $(NGX_ENABLED)/50-mod-http-llm.conf \
                   $(SBIN_DIR)/llm-sidecar \
                   $(UNIT_DIR)/llm-sidecar.service \
                   $(SYSUSERS_DIR)/llm-sidecar.conf \
                   $(SHARE_DIR)/prometheus/alerts.yml \
                   $(SHARE_DIR)/grafana/ngx_llm.json \
                   $(SHARE_DIR)/sidecar.json.example

.PHONY: install uninstall deps-obs test-obs test-status-page test-install

deps-obs:
	$(call apt_install,$(TEST_PKGS) $(OBS_PKGS))

install: module sidecar
	install -d $(DESTDIR)$(NGX_MODULES_DIR) $(DESTDIR)$(NGX_AVAILABLE) \
	    $(DESTDIR)$(NGX_ENABLED) $(DESTDIR)$(SBIN_DIR) \
	    $(DESTDIR)$(UNIT_DIR) $(DESTDIR)$(SYSUSERS_DIR) \
	    $(DESTDIR)$(SHARE_DIR)/prometheus $(DESTDIR)$(SHARE_DIR)/grafana
	install -m 0644 $(MODULE_SO) $(DESTDIR)$(NGX_MODULES_DIR)/
	echo 'load_module modules/ngx_http_llm_module.so;' \
	    > $(DESTDIR)$(NGX_AVAILABLE)/mod-http-llm.conf
	ln -sfn $(NGX_AVAILABLE)/mod-http-llm.conf \
	    $(DESTDIR)$(NGX_ENABLED)/50-mod-http-llm.conf
	install -m 0755 $(SIDECAR_BIN) $(DESTDIR)$(SBIN_DIR)/llm-sidecar
	install -m 0644 conf/systemd/llm-sidecar.service $(DESTDIR)$(UNIT_DIR)/
	install -m 0644 conf/systemd/llm-sidecar.sysusers \
	    $(DESTDIR)$(SYSUSERS_DIR)/llm-sidecar.conf
	install -m 0644 conf/prometheus/alerts.yml \
	    $(DESTDIR)$(SHARE_DIR)/prometheus/
	install -m 0644 conf/grafana/ngx_llm.json $(DESTDIR)$(SHARE_DIR)/grafana/
	@# the example sidecar configuration with the unit's paths
	sed -e 's|"/tmp/ngx_llm/sidecar.sock"|"/run/llm-sidecar/sidecar.sock"|' \
	    -e 's|"/tmp/ngx_llm/sidecar-data"|"/var/lib/llm-sidecar"|' \
	    -e 's|"\.\./prices.json"|"prices.json"|' \
	    conf/sidecar/sidecar.json > $(DESTDIR)$(SHARE_DIR)/sidecar.json.example
	install -d -m 0755 $(DESTDIR)$(SIDECAR_ETC)
	@# defaults only where there are none; a fresh admin token each time
	test -e $(DESTDIR)$(SIDECAR_ETC)/sidecar.json \
	    || (umask 077; sed "s|\"change-me-admin-token-[0-9]*\"|\"$$(head -c 24 \
	            /dev/urandom | base64 | tr '+/' '-_')\"|" \
	        $(DESTDIR)$(SHARE_DIR)/sidecar.json.example \
	        > $(DESTDIR)$(SIDECAR_ETC)/sidecar.json)
	test -e $(DESTDIR)$(SIDECAR_ETC)/prices.json \
	    || install -m 0644 conf/prices.json $(DESTDIR)$(SIDECAR_ETC)/
	@if [ -z "$(DESTDIR)" ]; then \
	    systemd-sysusers $(SYSUSERS_DIR)/llm-sidecar.conf; \
	    chown llm-sidecar $(SIDECAR_ETC)/sidecar.json; \
	    systemctl daemon-reload 2> /dev/null || true; \
	    echo "install: done; systemctl enable --now llm-sidecar," \
	         "then nginx -t && systemctl reload nginx"; \
	fi

uninstall:
	@if [ -z "$(DESTDIR)" ]; then \
	    systemctl disable --now llm-sidecar 2> /dev/null || true; \
	fi
	rm -f $(addprefix $(DESTDIR),$(OBS_INSTALLED))
	-rmdir $(DESTDIR)$(SHARE_DIR)/prometheus $(DESTDIR)$(SHARE_DIR)/grafana \
	    $(DESTDIR)$(SHARE_DIR) 2> /dev/null
	@if [ -z "$(DESTDIR)" ]; then systemctl daemon-reload 2> /dev/null || true; fi
	@echo "uninstall: kept $(DESTDIR)$(SIDECAR_ETC) and /var/lib/llm-sidecar"

test-obs: test-status-page test-install

test-status-page: module mock
	bash t/browser/status-page.sh $(MODULE_SO)

test-install: module sidecar
	bash t/install.sh $(B)
