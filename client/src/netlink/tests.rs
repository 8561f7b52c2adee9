use super::*;

#[test]
fn prefixes_longer_than_the_address_are_refused() {
    let v4: IpAddr = "10.0.0.1".parse().unwrap();
    let v6: IpAddr = "fd00::1".parse().unwrap();
    assert!(check_prefix("x", &v4, 32).is_ok());
    assert_eq!(
        check_prefix("x", &v4, 33).unwrap_err().errno(),
        libc::EINVAL
    );
    assert!(check_prefix("x", &v6, 128).is_ok());
    assert_eq!(
        check_prefix("x", &v6, 129).unwrap_err().errno(),
        libc::EINVAL
    );
}

#[test]
fn routes_need_one_family() {
    let v4: IpAddr = "10.0.0.0".parse().unwrap();
    let g6: IpAddr = "fd00::1".parse().unwrap();
    let e = route_msg("r", None, Some((v4, 8)), Some(g6), None, true, 0, 0).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let e = route_msg("r", None, None, None, Some(2), true, 0, 0).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let m = route_msg("r", None, None, Some(g6), None, true, 0, 0).unwrap();
    assert_eq!(m.header.destination_prefix_length, 0);
    assert_eq!(m.attributes.len(), 1);
}

#[test]
fn interface_names_are_checked_like_the_kernel() {
    assert!(check_new_ifname("x", "br0").is_ok());
    for bad in ["", "a/b", "a:b", "a b", ".", "..", "0123456789abcdef"] {
        assert!(check_new_ifname("x", bad).is_err(), "{bad:?}");
    }
}
