// An AMQP 1.0 client that is not built on proton, for amqptx's integration
// tests (tests/integration/test_rhea.py).
//
//   node client.js URL ADDRESS COUNT [--user U] [--password P] [--timeout S]
//
// Connects to URL (amqp://HOST:PORT) with rhea, sends COUNT messages with
// the bodies "rhea-0" ... "rhea-(COUNT-1)" to ADDRESS, waiting until each is
// accepted, then receives COUNT messages from ADDRESS, accepting them, and
// prints one JSON line per body ({"body": ...}), then {"done": true}.
//
// Credentials: with --user and --password, SASL PLAIN; with --user alone,
// SASL ANONYMOUS (the user as trace information); with neither, no SASL
// layer at all (the plain AMQP header).
//
// Exits 0 once everything was received and the connection closed cleanly;
// 1 on any error (refused login, connection error, an outcome other than
// accepted, or nothing done within --timeout seconds, 30 by default), with
// the reason on standard error; 2 for bad arguments.
'use strict';

const rhea = require('rhea');

function usage(message) {
    process.stderr.write(
        `${message}\nusage: node client.js URL ADDRESS COUNT ` +
            '[--user U] [--password P] [--timeout SECONDS]\n'
    );
    process.exit(2);
}

function parseArguments(argv) {
    const positional = [];
    const options = { timeout: 30 };
    for (let index = 0; index < argv.length; index++) {
        const argument = argv[index];
        if (['--user', '--password', '--timeout'].includes(argument)) {
            if (index + 1 >= argv.length) usage(`${argument} needs a value`);
            options[argument.slice(2)] = argv[++index];
        } else if (argument.startsWith('--')) {
            usage(`unknown option ${argument}`);
        } else {
            positional.push(argument);
        }
    }
    if (positional.length !== 3) usage('URL, ADDRESS and COUNT are required');
    const [text, address, countText] = positional;
    let url;
    try {
        url = new URL(text);
    } catch (e) {
        usage(`bad URL ${JSON.stringify(text)}: ${e.message}`);
    }
    if (url.protocol !== 'amqp:') usage(`only amqp: URLs, not ${url.protocol}`);
    const count = Number(countText);
    if (!Number.isInteger(count) || count < 1) usage(`bad COUNT ${countText}`);
    const timeout = Number(options.timeout);
    if (!(timeout > 0)) usage(`bad --timeout ${options.timeout}`);
    if (options.password !== undefined && options.user === undefined) {
        usage('--password needs --user');
    }
    return {
        // new URL() keeps the brackets of an IPv6 host; net.connect does not
        // want them.
        host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: url.port ? Number(url.port) : 5672,
        address,
        count,
        timeout,
        user: options.user,
        password: options.password,
    };
}

function main() {
    const config = parseArguments(process.argv.slice(2));
    let finished = false;

    function finish(code, reason) {
        if (finished) return;
        finished = true;
        if (reason) process.stderr.write(`rhea client: ${reason}\n`);
        process.exit(code);
    }

    const timer = setTimeout(
        () => finish(1, `timed out after ${config.timeout} s`),
        config.timeout * 1000
    );

    const options = {
        host: config.host,
        port: config.port,
        reconnect: false,
    };
    if (config.user !== undefined) {
        options.username = config.user;
        if (config.password !== undefined) options.password = config.password;
    }

    const container = rhea.create_container({ id: `rhea-client-${process.pid}` });
    const connection = container.connect(options);
    let sent = 0;
    let accepted = 0;
    let received = 0;
    let done = false;

    function describe(error) {
        if (!error) return 'no error given';
        if (error.condition) return `${error.condition}: ${error.description}`;
        return String(error.message || error);
    }

    const sender = connection.open_sender(config.address);
    sender.on('sendable', () => {
        while (sender.sendable() && sent < config.count) {
            sender.send({ body: `rhea-${sent}` });
            sent++;
        }
    });
    sender.on('accepted', () => {
        accepted++;
        if (accepted === config.count) {
            sender.close();
            receive();
        }
    });
    for (const outcome of ['rejected', 'released', 'modified']) {
        sender.on(outcome, (context) => {
            const state = context.delivery.remote_state;
            finish(1, `a message was ${outcome} (${describe(state && state.error)})`);
        });
    }
    sender.on('sender_error', (context) =>
        finish(1, `sender error: ${describe(context.sender.error)}`)
    );

    function receive() {
        const receiver = connection.open_receiver({
            source: config.address,
            autoaccept: true,
            credit_window: Math.min(config.count, 100),
        });
        receiver.on('message', (context) => {
            if (received >= config.count) return;
            process.stdout.write(`${JSON.stringify({ body: context.message.body })}\n`);
            received++;
            if (received === config.count) {
                done = true;
                process.stdout.write(`${JSON.stringify({ done: true })}\n`);
                connection.close();
            }
        });
        receiver.on('receiver_error', (context) =>
            finish(1, `receiver error: ${describe(context.receiver.error)}`)
        );
    }

    connection.on('connection_error', (context) =>
        finish(1, `connection error: ${describe(context.error || context.connection.error)}`)
    );
    connection.on('connection_close', () => {
        clearTimeout(timer);
        finish(done ? 0 : 1, done ? null : 'the server closed the connection');
    });
    connection.on('protocol_error', (context) =>
        finish(1, `protocol error: ${describe(context.error)}`)
    );
    connection.on('disconnected', (context) =>
        finish(1, `disconnected: ${describe(context.error)}`)
    );
    connection.on('error', (context) =>
        finish(1, `error: ${describe(context.error || context.connection.error)}`)
    );
}

main();
