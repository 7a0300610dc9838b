//! IPv4 socket addresses inside datagrams, munged against NAT gateways.
// spec: channel.md §2.3

use std::net::{Ipv4Addr, SocketAddrV4};

/// Length of an encoded address: 4 bytes IPv4 address, 2 bytes UDP port (BE16).
pub const ADDRESS_LEN: usize = 6;

/// The 6 plain bytes of `addr`: the IPv4 octets in network order, then the port (BE16).
pub fn encode_plain(addr: SocketAddrV4) -> [u8; ADDRESS_LEN] {
    let [a, b, c, d] = addr.ip().octets();
    let [p0, p1] = addr.port().to_be_bytes();
    [a, b, c, d, p0, p1]
}

/// The address of 6 plain bytes (inverse of [`encode_plain`]).
pub fn decode_plain(bytes: &[u8; ADDRESS_LEN]) -> SocketAddrV4 {
    let [a, b, c, d, p0, p1] = *bytes;
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p0, p1]))
}

/// The munged on-the-wire form of `addr`: every byte of [`encode_plain`] complemented.
pub fn munge(addr: SocketAddrV4) -> [u8; ADDRESS_LEN] {
    encode_plain(addr).map(|b| !b)
}

/// The address carried by 6 munged bytes (inverse of [`munge`]).
pub fn unmunge(bytes: &[u8; ADDRESS_LEN]) -> SocketAddrV4 {
    decode_plain(&bytes.map(|b| !b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_example() {
        // spec: channel.md §2.3 example
        let addr: SocketAddrV4 = "192.0.2.7:8585".parse().unwrap();
        assert_eq!(encode_plain(addr), [0xc0, 0x00, 0x02, 0x07, 0x21, 0x89]);
        assert_eq!(munge(addr), [0x3f, 0xff, 0xfd, 0xf8, 0xde, 0x76]);
        assert_eq!(unmunge(&[0x3f, 0xff, 0xfd, 0xf8, 0xde, 0x76]), addr);
    }

    #[test]
    fn v1_hello_address() {
        // V1 datagram 1: 127.0.0.1:8586 munged 80fffffede75
        let addr: SocketAddrV4 = "127.0.0.1:8586".parse().unwrap();
        assert_eq!(munge(addr), [0x80, 0xff, 0xff, 0xfe, 0xde, 0x75]);
    }

    proptest! {
        #[test]
        fn round_trip(ip: u32, port: u16, raw: [u8; 6]) {
            let addr = SocketAddrV4::new(Ipv4Addr::from(ip), port);
            prop_assert_eq!(unmunge(&munge(addr)), addr);
            prop_assert_eq!(decode_plain(&encode_plain(addr)), addr);
            prop_assert_eq!(munge(unmunge(&raw)), raw);
        }
    }
}
