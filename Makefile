# ioth — quick start:  make demo   (two isolated stacks talking over a virtual switch)
#                      make test   (the whole test suite)
#
# As a C library:      make                      (builds the release artifacts)
#                      make install [PREFIX=/usr/local] [LIBDIR=...] [INCLUDEDIR=...]
#                                   [MANDIR=...] [BINDIR=...] [DESTDIR=...]
#                      make uninstall (same variables)
# `make install` only copies what `make` built (so `sudo make install` compiles nothing), stripped.
CARGO ?= cargo
TARGET_DIR ?= target
PROFILE ?= release

PREFIX ?= /usr/local
EXEC_PREFIX ?= $(PREFIX)
LIBDIR ?= $(EXEC_PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(EXEC_PREFIX)/bin
DATAROOTDIR ?= $(PREFIX)/share
MANDIR ?= $(DATAROOTDIR)/man
# The plug-ins and ioth-host: libioth.so finds its host at <its own dir>/ioth/ioth-host.
PLUGINDIR ?= $(LIBDIR)/ioth
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOVERSION := 0
INSTALL ?= install
# strip(1) on what is installed (STRIP= keeps the symbols).
STRIP ?= strip

CARGO_PROFILE = $(if $(filter debug,$(PROFILE)),dev,$(PROFILE))
PROFILE_DIR = $(TARGET_DIR)/$(PROFILE)
D_LIB = $(DESTDIR)$(LIBDIR)
D_INC = $(DESTDIR)$(INCLUDEDIR)
D_BIN = $(DESTDIR)$(BINDIR)
D_MAN = $(DESTDIR)$(MANDIR)
D_PLUG = $(DESTDIR)$(PLUGINDIR)
D_PC = $(DESTDIR)$(PKGCONFIGDIR)

HEADERS = client/include/ioth.h client/include/libioth.h client/include/ioth_nlinline.h \
	client/include/iothaddr.h
LIBS = ioth iothaddr
MAN1 = $(wildcard docs/man/man1/*.1)
MAN3 = $(wildcard docs/man/man3/*.3)
MAN7 = $(wildcard docs/man/man7/*.7)

.PHONY: all build deps demo demo-c test check-fuzz test-outside package bench install uninstall clean

all:
	$(CARGO) build --workspace --profile $(CARGO_PROFILE) --target-dir $(TARGET_DIR)

deps:
	@tests/scripts/deps.sh

build:
	$(CARGO) build --workspace --all-targets

# Echo server and terminal client on two vdestack stacks over a VDE switch.
demo:
	tests/scripts/demo.sh rust

# The same with the C programs, compiled against ioth.h.
demo-c:
	tests/scripts/demo.sh c

test: deps
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

# The cargo-fuzz targets (fuzz/, not a workspace member) still compile against the crates they
# fuzz (type-checked only: running them needs cargo-fuzz and nightly, fuzz/README.md).
check-fuzz:
	$(CARGO) check --manifest-path fuzz/Cargo.toml --locked

# A crate outside the workspace, against the host installed into a temporary prefix (slow: it
# compiles ioth for that crate; tests/outside.rs). Needs the debug build (`make test`).
test-outside:
	timeout 1200 $(CARGO) test -p ioth-tests --test outside -- --ignored

# The crates meant for crates.io, packaged and verified (built from their .crate files), never
# uploaded (docs/publishing.md).
PUBLISHED = ioth-proto ioth-plugin-sdk iothaddr ioth ioth_kernel ioth_vdestack ioth_smoltcp ioth-host
# A target directory of its own, emptied first: the packaged crates share name and version with
# the workspace's, and a build of an earlier package would pass for theirs. For the same reason a
# cargo home of its own: cargo extracts the packaged crates into CARGO_HOME/registry/src/ under a
# name made from the target directory's path and reuses an extraction it finds there, so a second
# run in the same directory would build the first run's sources. That home shares the user's
# registry index, downloads and configuration (links), so nothing is fetched again.
USER_CARGO_HOME = $(or $(CARGO_HOME),$(HOME)/.cargo)
PACKAGE_HOME = $(TARGET_DIR)/package-verify/cargo-home
package:
	rm -rf $(TARGET_DIR)/package-verify
	mkdir -p $(PACKAGE_HOME)/registry
	for f in registry/index registry/cache config.toml config; do \
	  if [ -e "$(USER_CARGO_HOME)/$$f" ]; then ln -s "$(abspath $(USER_CARGO_HOME))/$$f" $(PACKAGE_HOME)/$$f; fi; \
	done
	CARGO_HOME=$(abspath $(PACKAGE_HOME)) CARGO_TARGET_DIR=$(TARGET_DIR)/package-verify \
	  timeout 1800 $(CARGO) package --locked $(addprefix -p ,$(PUBLISHED))

clean:
	$(CARGO) clean

# ---- install: copies what `make` (or `make PROFILE=debug`) built; never builds.
# LIBDIR/libioth.so.$(VERSION) with libioth.so.0 and libioth.so links (same for libiothaddr),
# INCLUDEDIR/{ioth.h,libioth.h,ioth_nlinline.h,iothaddr.h}, LIBDIR/pkgconfig/{ioth,iothaddr}.pc,
# PLUGINDIR/ioth-host and every plug-in built (cargo's libioth_<name>.so as ioth_<name>.so),
# BINDIR/ioth-host (a link to PLUGINDIR's), PLUGINDIR/ioth-run with its link BINDIR/ioth-run
# (so that it finds ioth-host beside it), PLUGINDIR/ioth with its link BINDIR/ioth (ioth ps,
# ioth audit, ioth run: it runs the ioth-run beside it) and PLUGINDIR/libioth_preload.so, MANDIR/man1, man3
# and man7.
install:
	@for f in $(PROFILE_DIR)/libioth.so $(PROFILE_DIR)/libiothaddr.so $(PROFILE_DIR)/ioth-host \
		$(PROFILE_DIR)/ioth-run $(PROFILE_DIR)/ioth $(PROFILE_DIR)/libioth_preload.so; do \
		[ -f "$$f" ] || { echo "$$f is missing: run 'make$(if $(filter debug,$(PROFILE)), PROFILE=debug,)' first" >&2; exit 1; }; \
	done
	$(INSTALL) -d $(D_LIB) $(D_INC) $(D_PLUG) $(D_BIN) $(D_PC) $(D_MAN)/man1 $(D_MAN)/man3 $(D_MAN)/man7
	@set -e; for l in $(LIBS); do \
		f=lib$$l.so.$(VERSION); \
		echo "$(INSTALL) -m 755 $(PROFILE_DIR)/lib$$l.so $(D_LIB)/$$f"; \
		$(INSTALL) -m 755 $(PROFILE_DIR)/lib$$l.so $(D_LIB)/$$f; \
		$(if $(STRIP),$(STRIP) --strip-unneeded $(D_LIB)/$$f;) \
		ln -sf $$f $(D_LIB)/lib$$l.so.$(SOVERSION); \
		ln -sf lib$$l.so.$(SOVERSION) $(D_LIB)/lib$$l.so; \
		sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
			-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
			client/pkgconfig/$$l.pc.in > $(D_PC)/$$l.pc; \
	done
	$(INSTALL) -m 644 $(HEADERS) $(D_INC)/
	$(INSTALL) -m 755 $(PROFILE_DIR)/ioth-host $(D_PLUG)/ioth-host
	$(if $(STRIP),$(STRIP) --strip-unneeded $(D_PLUG)/ioth-host)
	ln -sf $(PLUGINDIR)/ioth-host $(D_BIN)/ioth-host
	$(INSTALL) -m 755 $(PROFILE_DIR)/ioth-run $(D_PLUG)/ioth-run
	$(if $(STRIP),$(STRIP) --strip-unneeded $(D_PLUG)/ioth-run)
	ln -sf $(PLUGINDIR)/ioth-run $(D_BIN)/ioth-run
	$(INSTALL) -m 755 $(PROFILE_DIR)/ioth $(D_PLUG)/ioth
	$(if $(STRIP),$(STRIP) --strip-unneeded $(D_PLUG)/ioth)
	ln -sf $(PLUGINDIR)/ioth $(D_BIN)/ioth
	$(INSTALL) -m 755 $(PROFILE_DIR)/libioth_preload.so $(D_PLUG)/libioth_preload.so
	$(if $(STRIP),$(STRIP) --strip-unneeded $(D_PLUG)/libioth_preload.so)
	@set -e; for f in $(PROFILE_DIR)/libioth_*.so; do \
		[ -e "$$f" ] || continue; \
		[ "$${f##*/}" != libioth_preload.so ] || continue; \
		n=$${f##*/lib}; \
		echo "$(INSTALL) -m 755 $$f $(D_PLUG)/$$n"; \
		$(INSTALL) -m 755 "$$f" "$(D_PLUG)/$$n"; \
		$(if $(STRIP),$(STRIP) --strip-unneeded "$(D_PLUG)/$$n";) \
	done
	$(INSTALL) -m 644 $(MAN1) $(D_MAN)/man1/
	$(INSTALL) -m 644 $(MAN3) $(D_MAN)/man3/
	$(INSTALL) -m 644 $(MAN7) $(D_MAN)/man7/

uninstall:
	@set -e; for l in $(LIBS); do \
		rm -f $(D_LIB)/lib$$l.so $(D_LIB)/lib$$l.so.$(SOVERSION) $(D_LIB)/lib$$l.so.$(VERSION) \
			$(D_PC)/$$l.pc; \
	done
	rm -f $(addprefix $(D_INC)/,$(notdir $(HEADERS)))
	rm -f $(D_BIN)/ioth-host $(D_PLUG)/ioth-host $(D_PLUG)/ioth_*.so
	rm -f $(D_BIN)/ioth-run $(D_PLUG)/ioth-run $(D_PLUG)/libioth_preload.so
	rm -f $(D_BIN)/ioth $(D_PLUG)/ioth
	rm -f $(addprefix $(D_MAN)/man1/,$(notdir $(MAN1)))
	rm -f $(addprefix $(D_MAN)/man3/,$(notdir $(MAN3))) $(addprefix $(D_MAN)/man7/,$(notdir $(MAN7)))
	-rmdir $(D_PLUG) $(D_PC) 2>/dev/null || true
