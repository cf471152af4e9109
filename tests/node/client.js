// A meteor-job client: `node client.js ACTION [ARG]` logs in with METEOR_TOKEN at
// DDP_HOST:DDP_PORT, does one thing to the queue JOB_ROOT, prints one line
// `result <JSON>` or `error <JSON of the Meteor error>`, and exits.
//   save           new Job(root, 'sendEmail', {...}).retry(...).repeat(...).save()
//   getJob ID      Job.getJob(root, id)          -> its document
//   work TYPE      Job.getWork(root, type), then job.done()
//   fail TYPE      Job.getWork(root, type), then job.fail('no luck')
//   cancel ID | restart ID    Job.getJob, then job.cancel() / job.restart()
var DDP = require('ddp');
var DDPlogin = require('ddp-login');
var Job = require('meteor-job');

var root = process.env.JOB_ROOT;
var action = process.argv[2];
var arg = process.argv[3];
var ddp = new DDP({host: process.env.DDP_HOST, port: Number(process.env.DDP_PORT),
                   use_ejson: true, autoReconnect: false});
Job.setDDP(ddp);

function finish(err, res) {
  if (err) console.log('error ' + JSON.stringify(err));
  else console.log('result ' + ddp.EJSON.stringify(res === undefined ? null : res));
  ddp.close();
}

function id(hex) { return new ddp.EJSON.ObjectID(hex); }

function withJob(then) {
  Job.getJob(root, id(arg), function (err, job) {
    if (err || !job) return finish(err || 'no such job');
    then(job);
  });
}

function withWork(then) {
  Job.getWork(root, arg, function (err, job) {
    if (err || !job) return finish(err || 'no work');
    then(job);
  });
}

ddp.connect(function (err) {
  if (err) throw err;
  DDPlogin(ddp, {env: 'METEOR_TOKEN', method: 'token', retry: 1}, function (err) {
    if (err) return finish(err);
    switch (action) {
      case 'save':
        var job = new Job(root, 'sendEmail', {address: 'a@example.com', subject: 'Hi'});
        job.priority('high').retry({retries: 2, wait: 1000}).repeat({repeats: 1, wait: 5000});
        return job.save(function (err, newId) {
          finish(err, err ? null : {id: newId, doc: job.doc});
        });
      case 'getJob': return withJob(function (job) { finish(null, job.doc); });
      case 'work': return withWork(function (job) {
        job.done({by: 'node'}, function (err, ok) { finish(err, {id: job.doc._id, ok: ok}); });
      });
      case 'fail': return withWork(function (job) {
        job.fail('no luck', function (err, ok) { finish(err, {id: job.doc._id, ok: ok}); });
      });
      case 'cancel': return withJob(function (job) { job.cancel(finish); });
      case 'restart': return withJob(function (job) { job.restart(finish); });
      default: finish('unknown action ' + action);
    }
  });
});
