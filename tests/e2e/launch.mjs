// Starts the stub upstream and the Worker once (see harness.mjs) for callers outside node's test
// runner.
//
//   node tests/e2e/launch.mjs -- CMD ARGS...   runs CMD with E2E_BASE_URL and E2E_STUB_URL set,
//                                              then stops everything; exits with CMD's status.
//   node tests/e2e/launch.mjs                  prints `ready {"base_url":...,"stub_url":...}`
//                                              and stays up until stdin closes or a signal.

import { spawn } from 'node:child_process';
import { gateway, release } from './harness.mjs';

delete process.env.E2E_BASE_URL;
delete process.env.E2E_STUB_URL;

const separator = process.argv.indexOf('--');
const command = separator === -1 ? [] : process.argv.slice(separator + 1);

let started;
try {
  started = await gateway();
} catch (error) {
  process.stderr.write(`launch: ${error.message}\n`);
  await release();
  process.exit(1);
}

if (command.length === 0) {
  process.stdout.write(
    `ready ${JSON.stringify({ base_url: started.baseURL, stub_url: started.stubURL })}\n`,
  );
  process.stdin.resume();
  process.stdin.on('end', () => release().finally(() => process.exit(0)));
  process.stdin.on('error', () => release().finally(() => process.exit(0)));
} else {
  const child = spawn(command[0], command.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, E2E_BASE_URL: started.baseURL, E2E_STUB_URL: started.stubURL },
  });
  const forward = (signal) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('exit', (code, signal) => {
    release().finally(() => process.exit(code ?? (signal ? 1 : 0)));
  });
}
