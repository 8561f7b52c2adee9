# ioth — quick start:  make demo   (two isolated stacks talking over a virtual switch)
#                      make test   (the whole test suite)
PREFIX ?= /usr/local
CARGO ?= cargo
TARGET_DIR ?= target

.PHONY: all build deps demo demo-c test bench install uninstall clean

all: build

deps:
	@tests/scripts/deps.sh

build:
	$(CARGO) build --workspace --all-targets

# The seed's demo: echo server and terminal client on two vdestack stacks over a VDE switch.
demo:
	tests/scripts/demo.sh rust

# The same with the C programs, compiled against the drop-in ioth.h.
demo-c:
	tests/scripts/demo.sh c

test: deps
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace

clean:
	$(CARGO) clean

# ---- install: $(DESTDIR)$(PREFIX)/lib/libioth.so, include/ioth.h + libioth.h, and the plug-in
# directory lib/ioth/ with ioth-host and every plug-in built (cargo's libioth_<name>.so installed
# as ioth_<name>.so). libioth.so finds its host at <its dir>/ioth/ioth-host, and the host loads
# plug-ins from its own directory. PROFILE=debug installs the debug build (used by the tests).
PROFILE ?= release
CARGO_PROFILE = $(if $(filter debug,$(PROFILE)),dev,$(PROFILE))
PROFILE_DIR = $(TARGET_DIR)/$(PROFILE)
LIBDIR = $(DESTDIR)$(PREFIX)/lib
INCDIR = $(DESTDIR)$(PREFIX)/include
PLUGINDIR = $(LIBDIR)/ioth

install:
	$(CARGO) build --workspace --profile $(CARGO_PROFILE) --target-dir $(TARGET_DIR)
	install -d $(LIBDIR) $(INCDIR) $(PLUGINDIR)
	install -m 755 $(PROFILE_DIR)/libioth.so $(LIBDIR)/libioth.so
	install -m 644 client/include/ioth.h client/include/libioth.h $(INCDIR)/
	install -m 755 $(PROFILE_DIR)/ioth-host $(PLUGINDIR)/ioth-host
	@set -e; for f in $(PROFILE_DIR)/libioth_*.so; do \
		[ -e "$$f" ] || continue; \
		n=$${f##*/lib}; \
		echo "install -m 755 $$f $(PLUGINDIR)/$$n"; \
		install -m 755 "$$f" "$(PLUGINDIR)/$$n"; \
	done

uninstall:
	rm -f $(LIBDIR)/libioth.so $(INCDIR)/ioth.h $(INCDIR)/libioth.h
	rm -f $(PLUGINDIR)/ioth-host $(PLUGINDIR)/ioth_*.so
	-rmdir $(PLUGINDIR) 2>/dev/null || true
