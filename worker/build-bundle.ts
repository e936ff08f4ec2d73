/** Prebuilds the workflow bundle for production workers (`npm run build`), so they start without webpack. */
import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';
import { DEFAULT_BUNDLE_PATH } from './worker';

async function build(): Promise<void> {
  const { code } = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows') });
  writeFileSync(DEFAULT_BUNDLE_PATH, code);
  console.log(`workflow bundle written to ${DEFAULT_BUNDLE_PATH} (${(code.length / 1024).toFixed(0)} KiB)`);
}

build().catch((err) => {
  console.error(err);
  process.exit(1);
});
