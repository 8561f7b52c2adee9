//! Counters the stack keeps for an observer (the host's audit thread: [`crate::diag`]): per
//! socket and per interface. A leaf module: the devices and socket kinds count, `diag` reports.

/// Bytes and datagrams of one socket, as the plug-in moves them between the pair and smoltcp.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Payload bytes handed to smoltcp to send.
    pub bytes_out: u64,
    /// Payload bytes received and handed to the application (or still queued in smoltcp).
    pub bytes_in: u64,
    /// Datagrams sent (UDP).
    pub dgrams_out: u64,
    /// Datagrams received (UDP).
    pub dgrams_in: u64,
}

impl Counts {
    /// `n` payload bytes sent (`dgram`: as one datagram).
    pub fn sent(&mut self, n: usize, dgram: bool) {
        self.bytes_out += n as u64;
        self.dgrams_out += u64::from(dgram);
    }

    /// `n` payload bytes received (`dgram`: as one datagram).
    pub fn received(&mut self, n: usize, dgram: bool) {
        self.bytes_in += n as u64;
        self.dgrams_in += u64::from(dgram);
    }
}

/// Counters of one interface (what `IFLA_STATS64` reports).
#[derive(Debug, Default, Clone, Copy)]
pub struct IfCounts {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

impl IfCounts {
    /// A frame (or packet) of `n` bytes received.
    pub fn rx(&mut self, n: usize) {
        self.rx_packets += 1;
        self.rx_bytes += n as u64;
    }

    /// A frame of `n` bytes sent.
    pub fn tx(&mut self, n: usize) {
        self.tx_packets += 1;
        self.tx_bytes += n as u64;
    }
}
