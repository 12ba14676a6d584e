// A small STOMP 1.2 client over WebSocket: the browser-side twin of servers/wire/stomp.py.
// Frames: COMMAND\n headers\n \n body NULL. Header values are escaped (\\r \\n \\c \\\\) except
// in CONNECT/CONNECTED; a content-length header lets the body contain NULL bytes; bare EOLs
// between frames are heart-beats. Enough for the lesson pages; not a full client (no ack modes).
'use strict';

class StompClient {
  constructor(url, protocols = ['v12.stomp', 'v11.stomp', 'v10.stomp']) {
    this.url = url;
    this.protocols = protocols;
    this.subscriptions = new Map();   // id -> callback(frame)
    this.receipts = new Map();        // receipt id -> resolve()
    this.nextId = 1;
    this.buffer = new Uint8Array(0);
    this.heartbeats = 0;
    this.onerror = null;              // called with an ERROR frame
    this.onclose = null;              // called with the WebSocket close event
  }

  connect(headers = {}) {
    return new Promise((resolve, reject) => {
      this.socket = new WebSocket(this.url, this.protocols);
      this.socket.binaryType = 'arraybuffer';
      this.socket.onopen = () => this.sendFrame('CONNECT',
        {'accept-version': '1.2,1.1,1.0', host: location.hostname, 'heart-beat': '0,0', ...headers});
      this.socket.onmessage = (e) => this._receive(e.data);
      this.socket.onclose = (e) => { reject(e); if (this.onclose) this.onclose(e); };
      this.onconnected = resolve;
    });
  }

  subscribe(destination, callback, {receipt = false} = {}) {
    const id = `sub-${this.nextId++}`;
    this.subscriptions.set(id, callback);
    return this._withReceipt('SUBSCRIBE', {destination, id, ack: 'auto'}, '', receipt).then(() => id);
  }

  unsubscribe(id, {receipt = false} = {}) {
    this.subscriptions.delete(id);
    return this._withReceipt('UNSUBSCRIBE', {id}, '', receipt);
  }

  send(destination, body = '', headers = {}, {receipt = false} = {}) {
    return this._withReceipt('SEND', {destination, ...headers}, body, receipt);
  }

  disconnect() {
    return this._withReceipt('DISCONNECT', {}, '', true).then(() => this.socket.close());
  }

  _withReceipt(command, headers, body, receipt) {
    if (!receipt) { this.sendFrame(command, headers, body); return Promise.resolve(); }
    const id = `receipt-${this.nextId++}`;
    return new Promise((resolve) => {
      this.receipts.set(id, resolve);
      this.sendFrame(command, {...headers, receipt: id}, body);
    });
  }

  // region: frame
  sendFrame(command, headers = {}, body = '') {
    const bytes = new TextEncoder().encode(body);
    const escape = command !== 'CONNECT' && command !== 'CONNECTED';
    const lines = [command];
    const all = {...headers};
    if (bytes.length) all['content-length'] = String(bytes.length);
    for (const [name, value] of Object.entries(all)) {
      lines.push(escape ? `${StompClient.escape(name)}:${StompClient.escape(String(value))}` : `${name}:${value}`);
    }
    this.socket.send(lines.join('\n') + '\n\n' + body + '\0');
  }
  // endregion

  static escape(text) {
    return text.replace(/\\/g, '\\\\').replace(/\r/g, '\\r').replace(/\n/g, '\\n').replace(/:/g, '\\c');
  }

  static unescape(text) {
    return text.replace(/\\(.)/g, (_, c) => ({'\\': '\\', r: '\r', n: '\n', c: ':'})[c] ?? ('\\' + c));
  }

  _receive(data) {
    const chunk = typeof data === 'string' ? new TextEncoder().encode(data) : new Uint8Array(data);
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer); joined.set(chunk, this.buffer.length);
    this.buffer = joined;
    let frame;
    while ((frame = this._nextFrame()) !== null) this._dispatch(frame);
  }

  _nextFrame() {
    let buf = this.buffer, start = 0;
    while (start < buf.length && (buf[start] === 10 || (buf[start] === 13 && buf[start + 1] === 10))) {
      start += buf[start] === 10 ? 1 : 2;       // heart-beat EOLs between frames
      this.heartbeats += 1;
    }
    buf = buf.subarray(start); this.buffer = buf;
    let headEnd = -1, bodyStart = -1;
    for (let i = 0; i < buf.length - 1; i++) {
      if (buf[i] === 10 && buf[i + 1] === 10) { headEnd = i; bodyStart = i + 2; break; }
      if (buf[i] === 10 && buf[i + 1] === 13 && buf[i + 2] === 10) { headEnd = i; bodyStart = i + 3; break; }
    }
    if (headEnd < 0) return null;
    const decoder = new TextDecoder();
    const lines = decoder.decode(buf.subarray(0, headEnd)).split('\n').map((l) => l.replace(/\r$/, ''));
    const command = lines[0];
    const escaped = command !== 'CONNECTED';
    const headers = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = escaped ? StompClient.unescape(line.slice(0, colon)) : line.slice(0, colon);
      const value = escaped ? StompClient.unescape(line.slice(colon + 1)) : line.slice(colon + 1);
      if (!(name in headers)) headers[name] = value;   // a repeated header keeps its first value
    }
    let bodyEnd;
    if ('content-length' in headers) {
      bodyEnd = bodyStart + Number(headers['content-length']);
      if (buf.length < bodyEnd + 1) return null;
    } else {
      bodyEnd = buf.indexOf(0, bodyStart);
      if (bodyEnd < 0) return null;
    }
    const body = decoder.decode(buf.subarray(bodyStart, bodyEnd));
    this.buffer = buf.slice(bodyEnd + 1);
    return {command, headers, body};
  }

  // region: dispatch
  _dispatch(frame) {
    if (frame.command === 'CONNECTED') {
      this.connected = frame;
      this.onconnected(frame);
    } else if (frame.command === 'MESSAGE') {
      const callback = this.subscriptions.get(frame.headers.subscription);
      if (callback) callback(frame);
    } else if (frame.command === 'RECEIPT') {
      const resolve = this.receipts.get(frame.headers['receipt-id']);
      this.receipts.delete(frame.headers['receipt-id']);
      if (resolve) resolve(frame);
    } else if (frame.command === 'ERROR' && this.onerror) {
      this.onerror(frame);
    }
  }
  // endregion
}
