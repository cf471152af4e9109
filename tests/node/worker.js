// job-collection's own node.js worker (the README's example, from job-collection's README),
// nearly verbatim: host, port and queue name from the environment (DDP_HOST, DDP_PORT,
// JOB_ROOT), the token in METEOR_TOKEN, and processJobs options as JSON in WORKER_OPTIONS.
// sendEmail logs and reports progress; an email with `hang: true` never finishes (the
// tests kill the process mid-job), one with `delay: <ms>` finishes that much later (so that
// jobs overlap); one with `fail: true` fails, with `failOptions` as job.fail's options (say
// {fatal: true} or {snooze: 60000}). A worker's callback is invoked once its jobs have
// finished. Prints "logged in", then "working <id>" and "done <id>" for each job.
var DDP = require('ddp');
var DDPlogin = require('ddp-login');
var Job = require('meteor-job');

function sendEmail(job, address, subject, message, callback) {
  console.log('working ' + job.doc._id.toHexString());
  if (job.data.hang) return;
  function send() {
    job.log('Sending to ' + address, {data: {subject: subject}});
    job.progress(1, 2);
    callback(job.data.fail ? new Error('mailbox full') : null);
  }
  if (job.data.delay) setTimeout(send, job.data.delay);
  else send();
}

// Setup the DDP connection
var ddp = new DDP({
  host: process.env.DDP_HOST,
  port: Number(process.env.DDP_PORT),
  use_ejson: true
});

// Connect Job with this DDP session
Job.setDDP(ddp);

// Open the DDP connection
ddp.connect(function (err) {
  if (err) throw err;
  DDPlogin(ddp, {env: 'METEOR_TOKEN', method: 'token', retry: 1}, function (err, token) {
    if (err) throw err;
    console.log('logged in');
    var options = JSON.parse(process.env.WORKER_OPTIONS || '{}');
    var workers = Job.processJobs(process.env.JOB_ROOT, 'sendEmail', options,
      function (jobs, cb) {
        // A payload worker gets an array of jobs
        var batch = Array.isArray(jobs) ? jobs : [jobs];
        var left = batch.length;
        batch.forEach(function (job) {
          var email = job.data; // Only one email per job
          sendEmail(job, email.address, email.subject, email.message,
            function (err) {
              if (err) {
                job.log("Sending failed with error" + err, {level: 'warning'});
                job.fail("" + err, email.failOptions || {});
              } else {
                job.done({sent: email.address});
              }
              console.log('done ' + job.doc._id.toHexString());
              // Be sure to invoke the callback when work on these jobs has finished
              left -= 1;
              if (left === 0) cb();
            }
          );
        });
      }
    );
  });
});
