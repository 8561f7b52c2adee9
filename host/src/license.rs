//! Licence compatibility between the application (as given to `ioth_set_license`) and a plug-in
//! (its `ioth_<name>_license` string), with the rules of the original libioth: a plug-in without a
//! licence or under any LGPL loads; otherwise the application must declare a licence the plug-in's
//! allows. Only the combinations below are known; in doubt, refuse.

const SPDX_PREFIX: &str = "SPDX-License-Identifier: ";

fn strip(s: &str) -> &str {
    s.trim()
        .strip_prefix(SPDX_PREFIX)
        .unwrap_or(s.trim())
        .trim()
}

/// Whether an application under `app` may load a plug-in under `plugin`.
pub fn compatible(app: Option<&str>, plugin: Option<&str>) -> bool {
    let Some(lib) = plugin.map(strip) else {
        return true;
    };
    if lib.len() >= 5 && lib[..5].eq_ignore_ascii_case("LGPL-") {
        return true;
    }
    let Some(prg) = app.map(strip) else {
        return false;
    };
    if prg.eq_ignore_ascii_case(lib) {
        return true;
    }
    let any_of = |list: &[&str]| list.iter().any(|l| prg.eq_ignore_ascii_case(l));
    const GPL2_PLUS_COMPAT: &[&str] = &[
        "GPL-2.0-only",
        "GPL-3.0-only",
        "GPL-2.0-or-later",
        "GPL-3.0-or-later",
    ];
    if lib.eq_ignore_ascii_case("GPL-2.0-or-later")
        || lib.eq_ignore_ascii_case("GPL-2.0-only OR GPL-3.0-only")
    {
        return any_of(GPL2_PLUS_COMPAT);
    }
    if lib.eq_ignore_ascii_case("GPL-3.0-or-later") {
        return any_of(&["GPL-3.0-only", "GPL-3.0-or-later"]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn rules() {
        assert!(compatible(None, None));
        assert!(compatible(
            None,
            Some("SPDX-License-Identifier: LGPL-2.1-or-later")
        ));
        assert!(!compatible(
            None,
            Some("SPDX-License-Identifier: GPL-2.0-or-later")
        ));
        assert!(compatible(
            Some("SPDX-License-Identifier: GPL-2.0-or-later"),
            Some("SPDX-License-Identifier: GPL-2.0-or-later")
        ));
        assert!(compatible(Some("GPL-3.0-only"), Some("GPL-2.0-or-later")));
        assert!(!compatible(Some("GPL-2.0-only"), Some("GPL-3.0-or-later")));
        assert!(!compatible(Some("MIT"), Some("GPL-2.0-or-later")));
        assert!(compatible(Some("MIT"), Some("MIT")));
        assert!(!compatible(Some("MIT"), Some("Proprietary-Thing")));
    }
}
