#!/usr/bin/env node
import { main } from '../dist/plugins/cli.js'

main(process.argv.slice(2))
