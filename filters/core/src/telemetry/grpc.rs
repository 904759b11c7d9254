//! Counting gRPC messages in a body as it streams by: each message is a
//! 5-byte prefix (a flag byte and a big-endian length) and its payload,
//! and a message may span any number of body chunks.

/// A running count of the messages of one direction of a gRPC stream.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::grpc::MessageCounter;
///
/// let mut counter = MessageCounter::default();
/// // Two messages of 3 and 0 bytes, cut in the middle of the first prefix.
/// counter.feed(&[0, 0, 0]);
/// counter.feed(&[0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0]);
/// assert_eq!(counter.messages(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MessageCounter {
    messages: u64,
    /// Prefix bytes of the next message seen so far.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Payload bytes of the current message still to come.
    remaining: u64,
}

impl MessageCounter {
    /// Takes the next chunk of the body.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                chunk = &chunk[skip..];
                self.remaining -= skip as u64;
                continue;
            }
            let take = (5 - self.prefix_len).min(chunk.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&chunk[..take]);
            self.prefix_len += take;
            chunk = &chunk[take..];
            if self.prefix_len == 5 {
                let [_, a, b, c, d] = self.prefix;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
                self.prefix_len = 0;
                self.messages += 1;
            }
        }
    }

    /// Messages begun so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }
}
