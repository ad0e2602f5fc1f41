// One CT slice from a DICOMweb server, drawn by cornerstone3D.
//
// URL parameters:
//   root   the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web (default: this origin's /dicom-web)
//   study  a StudyInstanceUID (default: the first study QIDO-RS returns)
//   blank  when present, draw nothing: the page the e2e test compares the slice against
// The page walks the path a viewer takes: QIDO-RS series -> WADO-RS series metadata ->
// WADO-RS frames of the middle slice, and sets <body data-state> to "rendered" once the slice
// is on the canvas, or to "error" with the reason in #status.
import { Enums, RenderingEngine, init as initCore } from '@cornerstonejs/core';
import { init as initImageLoader, wadors } from '@cornerstonejs/dicom-image-loader';

const params = new URLSearchParams(location.search);
const root = (params.get('root') || `${location.origin}/dicom-web`).replace(/\/$/, '');
const element = document.getElementById('viewport');

function show(state, text) {
  document.body.dataset.state = state;
  document.getElementById('status').textContent = text;
  console.log(`[${state}] ${text}`);
}

const first = (json, tag) => json[tag]?.Value?.[0];

async function getJson(path) {
  const response = await fetch(`${root}${path}`, { headers: { Accept: 'application/dicom+json' } });
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return response.status === 204 ? [] : response.json();
}

async function main() {
  if (params.has('blank')) return show('blank', 'blank page');
  let study = params.get('study');
  if (!study) {
    const studies = await getJson('/studies?limit=1');
    if (!studies.length) throw new Error('no studies on the server');
    study = first(studies[0], '0020000D');
  }
  const series = await getJson(`/studies/${study}/series`);
  const ct = series.find((s) => first(s, '00080060') === 'CT');
  if (!ct) throw new Error(`study ${study} has no CT series`);
  const seriesUid = first(ct, '0020000E');
  const instances = await getJson(`/studies/${study}/series/${seriesUid}/metadata`);
  // Order slices along the normal as a viewer would; fall back to InstanceNumber.
  const z = (m) => m['00200032']?.Value?.[2] ?? first(m, '00200013') ?? 0;
  instances.sort((a, b) => z(a) - z(b));

  await initCore();
  initImageLoader({ maxWebWorkers: 1 });
  const imageIds = instances.map((metadata) => {
    const sop = first(metadata, '00080018');
    const imageId = `wadors:${root}/studies/${study}/series/${seriesUid}/instances/${sop}/frames/1`;
    wadors.metaDataManager.add(imageId, metadata);
    return imageId;
  });

  const engine = new RenderingEngine('dicomnode');
  engine.enableElement({ viewportId: 'ct', type: Enums.ViewportType.STACK, element });
  const viewport = engine.getViewport('ct');
  const middle = Math.floor(imageIds.length / 2);
  element.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
    show('rendered', `CT slice ${middle + 1}/${imageIds.length} of series ${seriesUid}`);
  }, { once: true });
  await viewport.setStack(imageIds, middle);
  viewport.render();
}

main().catch((error) => {
  console.error(error);
  show('error', String(error?.message || error));
});
