//! `text/event-stream` read as it arrives in arbitrary pieces.

/// One SSE event: its `data` (lines joined) and its `id`, if any.
pub struct SseEvent<'a> {
    pub data: &'a str,
    pub id: Option<&'a str>,
}

/// Reads `text/event-stream` as it arrives in arbitrary pieces.
#[derive(Default)]
pub struct SseParser {
    /// An incomplete line.
    partial: Vec<u8>,
    data: String,
    id: Option<String>,
}

impl SseParser {
    /// Feeds bytes; calls `on_event` for each event they complete.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let joined;
            let line = if self.partial.is_empty() {
                &rest[..end]
            } else {
                let mut partial = std::mem::take(&mut self.partial);
                partial.extend_from_slice(&rest[..end]);
                joined = partial;
                &joined[..]
            };
            rest = &rest[end + 1..];
            self.line(&String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)), &mut on_event);
        }
        self.partial.extend_from_slice(rest);
    }

    fn line(&mut self, line: &str, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            if !self.data.is_empty() {
                on_event(SseEvent { data: &self.data, id: self.id.as_deref() });
            }
            self.data.clear();
            self.id = None;
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
            }
            "id" => self.id = Some(value.to_string()),
            _ => {} // event (the type is in the data too), retry, comments
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_read_across_any_split() {
        let stream = b": hello\nretry: 2000\n\nevent: subscribed\ndata: {\"a\":1}\n\nid: c:1:e\r\nevent: message\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::default();
            let mut seen = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                parser.feed(part, |e| seen.push((e.data.to_string(), e.id.map(str::to_string))));
            }
            assert_eq!(
                seen,
                [("{\"a\":1}".to_string(), None), ("{\"b\":\n2}".to_string(), Some("c:1:e".to_string()))],
                "split at {split}"
            );
        }
    }
}
