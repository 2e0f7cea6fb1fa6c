// The reader of a text/event-stream body (the chat's answer): splits it into events
// and hands each event's name and parsed data to a callback.
//
// May import nothing of ours (a leaf).

/** Reads a text/event-stream body, calling `handle(event, data)` per event. */
export async function readEvents(stream, handle) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    // Normalise line ends, but keep a trailing CR: its LF may be in the next chunk.
    const keep = buffer.endsWith('\r') ? '\r' : '';
    buffer = buffer.slice(0, buffer.length - keep.length).replace(/\r\n?/g, '\n') + keep;
    let end;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatchBlock(block, handle);
    }
  }
  buffer += decoder.decode();
  if (buffer.trim()) dispatchBlock(buffer.replace(/\r\n?/g, '\n'), handle);
}

function dispatchBlock(block, handle) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join('\n'));
  } catch (_) {
    parsed = { content: data.join('\n') };
  }
  handle(event, parsed);
}
