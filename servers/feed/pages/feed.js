// Shared by every page: show events as they arrive, publish from a box, keep a record for tests.
// Every URL is RELATIVE to the page (e.g. '../feed/publish'), so the pages work unchanged behind
// a path prefix such as jupyter-server-proxy's <base>/proxy/<port>/.
'use strict';

window.received = [];   // every event/notice shown, with received_at (seconds, like time.time())
window.lastSeq = 0;     // highest seq seen: the cursor for polling, the resume point for the rest

function feedUrl(path) {            // an http(s) URL relative to this page
  return new URL(path, location.href).href;
}

function wsUrl(path) {              // a ws(s) URL relative to this page: same host, scheme swapped
  const url = new URL(path, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

function setStatus(text) {
  document.getElementById('status').textContent = text;
  window.status_text = text;
}

function show(message) {
  message.received_at = Date.now() / 1000;
  window.received.push(message);
  const li = document.createElement('li');
  if ('seq' in message) {
    window.lastSeq = Math.max(window.lastSeq, message.seq);
    const latency = ((message.received_at - message.sent_at) * 1000).toFixed(1);
    li.textContent = `#${message.seq}  ${JSON.stringify(message.data)}  (${latency} ms)`;
  } else {
    if (message.type === 'gap' && message.reset) window.lastSeq = message.first - 1;  // a restarted feed: seqs start again
    li.textContent = `[${message.type}] ${JSON.stringify(message)}`;
    li.className = 'notice';
  }
  const list = document.getElementById('events');
  list.insertBefore(li, list.firstChild);
}

function showBody(body, response) {  // an HTTP answer {"events": [...], "missed"?: {...}, "reset"?: {...}}
  if (response) window.feedEpoch = response.headers.get('X-Feed-Epoch') || window.feedEpoch;
  if (body.reset) show({type: 'gap', reset: true, first: body.reset.first, epoch: body.reset.epoch,
                        missed: body.missed || null});  // the feed restarted: its seqs start again
  else if (body.missed) show({type: 'gap', missed: body.missed});
  body.events.forEach(show);
}

function epochQuery() {             // '&epoch=E' once the feed named its run: a restart is noticed
  return window.feedEpoch ? `&epoch=${encodeURIComponent(window.feedEpoch)}` : '';
}

async function publishViaHttp(data) {
  const response = await fetch(feedUrl('../feed/publish'), {
    method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({data}),
  });
  return response.json();
}

function wirePublishForm(send) {    // send(data) publishes by this page's technique
  const form = document.getElementById('publish');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = form.elements.data.value;
    let data;
    try { data = JSON.parse(text); } catch (_) { data = text; }
    send(data);
    form.elements.data.value = '';
  });
}
