# ioth — quick start:  make demo   (two isolated stacks talking over a virtual switch)
#                      make test   (the whole test suite)
PREFIX ?= /usr/local
CARGO ?= cargo
TARGET_DIR ?= target

.PHONY: all build deps demo test bench install uninstall clean

all: build

deps:
	@tests/scripts/deps.sh

build:
	$(CARGO) build --workspace --all-targets

test: deps
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace

clean:
	$(CARGO) clean
