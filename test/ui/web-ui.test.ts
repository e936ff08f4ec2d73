/**
 * Issue #6, as an operator sees it: in the Temporal Web UI of the local stack, a group's runs are found by
 * `KiteGroup`, its last cycle shows fetch, diff and publish with readable summaries, the run carries a static
 * summary and its current details show the group's live status (issue #16), and the memo shows the
 * group's configuration. Headless Chromium from Debian, driven by playwright-core (which never downloads a browser).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { configureUpdate, syncNowSignal } from '../../workflows/definitions';
import { tempDir } from '../setup/processes';
import { testStack, uniqueName } from '../setup/stack';
import { MemoryKite } from '../support/memory-kite';
import { RecordingTarget } from '../support/recording-target';
import { startSyncHarness, type SyncHarness } from '../support/sync-harness';

const CHROMIUM = process.env.KITE_CHROMIUM_BIN ?? '/usr/bin/chromium';
/** How long one expected piece of the UI may take to appear. */
const UI_WAIT_MS = 10_000;
/** An interval only the memo can show: the workflow's input still holds the one it started with. */
const CONFIGURED_INTERVAL_MS = 5_400_000;

const kite = new MemoryKite(50);
const cloud = new RecordingTarget('cloud');
let harness: SyncHarness;
let browser: Browser;
/** Created on the first failure only. */
let shots: string | undefined;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: run 'bash scripts/setup.sh --test-peers' (Debian chromium)`);
  }
  const ui = await fetch(`${testStack.webUiUrl}/api/v1/settings`).catch((err: Error) => err);
  if (ui instanceof Error || !ui.ok) {
    throw new Error(
      `the Temporal Web UI does not answer at ${testStack.webUiUrl} (${ui instanceof Error ? ui.message : ui.status}): ` +
        'a Temporal server already listening on the test port is reused as is; stop it or start it with its UI'
    );
  }
  // Chromium starts while the worker bundles the workflow; whichever started is stopped in afterAll.
  const [started, launched] = await Promise.allSettled([
    startSyncHarness({ kite, targets: [cloud] }),
    launchChromium(),
  ]);
  if (started.status === 'fulfilled') harness = started.value;
  if (launched.status === 'fulfilled') browser = launched.value;
  if (started.status === 'rejected') throw started.reason;
  if (launched.status === 'rejected') throw new Error(`Chromium (${CHROMIUM}) did not start: ${launched.reason}`);
});

afterAll(async () => {
  await browser?.close();
  await harness?.close();
});

function launchChromium(): Promise<Browser> {
  // playwright-core's own temporary profile is fresh for every launch.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Runs one operator step; when it fails, the error names the step and a screenshot of the page at that moment. */
async function step<T>(page: Page, name: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (err) {
    shots ??= tempDir('web-ui');
    const file = path.join(shots, `${name.replace(/[^a-z0-9]+/gi, '-')}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => undefined);
    // Playwright's first line says what timed out, its call log what it was waiting for.
    const lines = stripVTControlCharacters((err as Error).message).split('\n');
    const waitingFor = lines.find((line) => line.includes('waiting for'))?.trim();
    throw new Error(
      [`Web UI: ${name}: ${lines[0]}`, waitingFor, `page: ${page.url()}`, `screenshot: ${file}`]
        .filter(Boolean)
        .join('\n  ')
    );
  }
}

const visible = (locator: Locator) => locator.waitFor({ state: 'visible', timeout: UI_WAIT_MS });

/** Waits until one of the page's frames shows `text`. */
async function visibleInSomeFrame(page: Page, text: string): Promise<void> {
  const deadline = Date.now() + UI_WAIT_MS;
  for (;;) {
    for (const frame of page.frames()) {
      if (
        await frame
          .getByText(text)
          .first()
          .isVisible()
          .catch(() => false)
      )
        return;
    }
    if (Date.now() > deadline) throw new Error(`no frame shows "${text}"`);
    await page.waitForTimeout(200);
  }
}

test("an operator finds the group's workflow by KiteGroup, its last fetch, diff and publish, and its config", async () => {
  const group = uniqueName('webui');
  const [icc] = kite.addSims(group, 5, 40_000);
  const handle = await harness.start(group, { targets: ['cloud'] });
  // A group whose name starts with ours: the KiteGroup filter must match the keyword exactly.
  const decoy = await harness.start(`${group}-other`, { targets: ['cloud'], enabled: false });
  await harness.waitForCycles(handle, 1);
  kite.update(icc, { alias: 'seen-in-the-ui' });
  await handle.signal(syncNowSignal);
  const status = await harness.waitForCycles(handle, 2);
  expect(status.lastCycle?.targets.cloud).toMatchObject({ changed: 1, published: 1 });
  await handle.executeUpdate(configureUpdate, { args: [{ intervalMs: CONFIGURED_INTERVAL_MS }] });

  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });

  await step(page, 'filter the workflows by KiteGroup', async () => {
    await page.goto(`${testStack.webUiUrl}/namespaces/default/workflows`);
    await page.getByTestId('toggle-manual-query').click();
    const query = page.getByTestId('manual-search-input');
    await query.fill(`KiteGroup = "${group}"`);
    await query.press('Enter');
    await page.waitForURL(/[?&]query=/, { timeout: UI_WAIT_MS });
  });

  const workflowLink = page.getByRole('link', { name: handle.workflowId, exact: true });
  await step(page, `find ${handle.workflowId} in the filtered list`, async () => {
    await visible(workflowLink);
    // The unfiltered list may still be on screen for a moment: the decoy must go, not merely be absent once.
    await page
      .getByRole('link', { name: decoy.workflowId, exact: true })
      .waitFor({ state: 'hidden', timeout: UI_WAIT_MS });
    const listed = await page.getByRole('link', { name: /^cloud-connector:/ }).allInnerTexts();
    if (listed.join() !== handle.workflowId) throw new Error(`the filtered list shows ${listed.join(', ')}`);
  });

  await step(page, 'open the workflow', async () => {
    await workflowLink.click();
    await page.waitForURL(/\/history$/, { timeout: UI_WAIT_MS });
    await visible(page.getByTestId('workflow-id-heading').getByText(handle.workflowId, { exact: true }));
  });

  // The last cycle (2), in which only the SIM changed in Kite was published.
  const lastCycle = [
    { type: 'fetchSnapshot', summary: `fetch Kite inventory for group ${group} (cycle 2)` },
    { type: 'diffSnapshot', summary: `diff group ${group} against cloud (cycle 2)` },
    { type: 'publishChanges', summary: `publish 1 changed SIMs of ${group} to cloud` },
  ];
  const timeline = page.locator('#event-history-timeline-graph');
  const scheduled = page.getByTestId('event-summary-row').filter({ hasText: 'Activity Task Scheduled' });
  for (const { type, summary } of lastCycle) {
    await step(page, `see ${type} of the last cycle in the timeline`, () =>
      visible(timeline.getByText(`${type} • ${summary}`, { exact: true }))
    );
    await step(page, `see ${type} of the last cycle in the event history`, async () => {
      const row = scheduled.filter({ hasText: summary });
      await visible(row);
      const text = await row.innerText();
      if (!text.includes(type)) throw new Error(`the event with summary "${summary}" is not a ${type}: ${text}`);
    });
  }

  await step(page, "see the run's static summary", () =>
    visible(page.getByText(`Kite group ${group} → cloud, every 1h`, { exact: true }).first())
  );
  await step(page, "see the group's live status in the current details", async () => {
    await page.getByText('User Metadata', { exact: true }).click();
    await visible(page.getByText('Current Details', { exact: true }));
    // The UI renders the workflow's Markdown in a sandboxed frame.
    for (const text of ['Cloud Monitoring ON', 'Failing SIMs:', 'Last cycle #2 completed', 'published']) {
      await visibleInSomeFrame(page, text);
    }
  });

  await step(page, 'see the configuration in the memo', async () => {
    await page.getByTestId('memo-tab').click();
    await page.waitForURL(/\/memo$/, { timeout: UI_WAIT_MS });
    await visible(page.getByText(`"intervalMs": ${CONFIGURED_INTERVAL_MS}`));
    await visible(page.getByText(`"group": "${group}"`));
    await visible(page.getByText('"cloud"', { exact: true }));
  });

  await handle.terminate();
  await decoy.terminate();
});
