// Context for GET in the bench (what bare Fastify costs on the machine): a bare Fastify server answering every request with a constant 302.
const fastify = require('fastify')({ logger: false });
const location = process.env.LOCATION || 'http://127.0.0.1:1/x';
fastify.all('*', (_request, reply) => {
  reply.code(302).header('location', location).send();
});
fastify.listen({ port: Number(process.argv[2]), host: '127.0.0.1' }).then(() => console.log('listening'));
