//! The scenarios, one file each. To add one: write `fn run(&Opts) -> Report` in a new file and
//! list it in [`ALL`].

mod msocket;
mod newstack;
mod proxy_cost;
mod run;
mod smoltcp;
mod stacks;
mod tcp_throughput;
mod vdestack;

use crate::support::Scenario;

/// Every scenario, in the order a full run prints them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "ioth-run-http",
        about: "100 MB over HTTP vdestack→smoltcp: http.server+curl under ioth-run vs the ioth API (root)",
        run: run::run,
    },
    Scenario {
        name: "msocket",
        about: "msocket+close on a kernel stack vs socket(2)+close",
        run: msocket::run,
    },
    Scenario {
        name: "newstack",
        about: "Stack::new(\"kernel\")+delete vs spawning /bin/true",
        run: newstack::run,
    },
    Scenario {
        name: "stacks",
        about: "newstack+delete: kernel, vdestack without and with an interface (root), vs /bin/true",
        run: stacks::run,
    },
    Scenario {
        name: "tcp-throughput",
        about: "TCP over 127.0.0.1: ioth native fds vs plain sockets",
        run: tcp_throughput::run,
    },
    Scenario {
        name: "vdestack-tcp",
        about: "TCP between two vdestack stacks over a VDE switch vs 127.0.0.1, MTU 1500/9000 (root)",
        run: vdestack::run_tcp,
    },
    Scenario {
        name: "vdestack-udp",
        about: "UDP round trip between two vdestack stacks over a VDE switch vs 127.0.0.1 (root)",
        run: vdestack::run_udp,
    },
    Scenario {
        name: "smoltcp-tcp",
        about: "TCP smoltcp↔vdestack, smoltcp↔smoltcp over a VDE switch vs vdestack↔vdestack (root)",
        run: smoltcp::run_tcp,
    },
    Scenario {
        name: "smoltcp-udp",
        about: "UDP round trip smoltcp↔vdestack, smoltcp↔smoltcp over a VDE switch vs vdestack↔vdestack (root)",
        run: smoltcp::run_udp,
    },
    Scenario {
        name: "proxy-cost-tcp",
        about: "TCP over 127.0.0.1: host-pump proxied fds (rwwrap) vs kernel native fds vs plain",
        run: proxy_cost::run_tcp,
    },
    Scenario {
        name: "proxy-cost-rtt",
        about: "TCP ping-pong over 127.0.0.1: host-pump proxied fds (rwwrap) vs native vs plain",
        run: proxy_cost::run_rtt,
    },
];
