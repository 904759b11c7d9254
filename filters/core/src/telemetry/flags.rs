//! Envoy's response flags: the `response.flags` bitmask as the short codes
//! of `%RESPONSE_FLAGS%` and Istio's `response_flags` label.

/// The short code of each bit of `response.flags`, lowest bit first, as
/// Envoy 1.40's `CoreResponseFlag` enum orders them.
pub const SHORT_CODES: [&str; 30] = [
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
    "UDO",
];

/// The flags as Envoy prints them: short codes joined with `,`, or `-`
/// for none. Bits Envoy does not define are left out.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::flags::short_codes;
///
/// assert_eq!(short_codes(0), "-");
/// assert_eq!(short_codes(0x20), "UF");
/// assert_eq!(short_codes(0x2 | 0x100), "UH,NR");
/// ```
pub fn short_codes(flags: u64) -> String {
    let codes: Vec<&str> = SHORT_CODES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags & (1 << bit) != 0)
        .map(|(_, code)| *code)
        .collect();
    if codes.is_empty() {
        "-".to_owned()
    } else {
        codes.join(",")
    }
}
